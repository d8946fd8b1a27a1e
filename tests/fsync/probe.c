/*
 * The program tests/fsync/run.sh watches: logs through edgebuf in one of three modes and
 * prints "MONOTONIC_NS EVENT" lines for the phases, which the script matches against the
 * fsyncs the shim logged.
 *
 *   probe async PATH SYNC_INTERVAL_MS   logs ~400 records/s for 2 s, then idles 1.5 s, closes
 *   probe sync PATH N                   logs N records one at a time in durability=sync
 */
#define _POSIX_C_SOURCE 200809L
#include "edgebuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int set(edgebuf_config_t *cfg, const char *k, const char *v) {
    if (edgebuf_config_set(cfg, k, v) == EDGEBUF_OK) return 0;
    fprintf(stderr, "probe: %s: %s\n", k, edgebuf_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 4 || (strcmp(argv[1], "async") != 0 && strcmp(argv[1], "sync") != 0)) {
        fprintf(stderr, "usage: probe async PATH SYNC_INTERVAL_MS | probe sync PATH N\n");
        return 2;
    }
    int sync_mode = strcmp(argv[1], "sync") == 0;
    edgebuf_config_t *cfg = edgebuf_config_new();
    if (!cfg) return 1;
    /* Nothing listens on port 9: records stay pending, only the writer touches the disk. */
    if (set(cfg, "path", argv[2]) || set(cfg, "endpoint", "http://127.0.0.1:9/ingest") ||
        set(cfg, "durability", sync_mode ? "sync" : "async") ||
        set(cfg, "commit.interval_ms", "20") || set(cfg, "retry.initial_ms", "60000") ||
        set(cfg, "retry.max_ms", "60000") ||
        (!sync_mode && set(cfg, "commit.sync_interval_ms", argv[3])))
        return 1;
    edgebuf_t *eb = NULL;
    if (edgebuf_open(cfg, &eb) != EDGEBUF_OK) {
        fprintf(stderr, "probe: open: %s\n", edgebuf_last_error());
        return 1;
    }
    edgebuf_config_free(cfg);
    printf("%lld opened\n", now_ns());
    const char rec[] = "{\"probe\":1,\"score\":0.5}";
    if (sync_mode) {
        long n = atol(argv[3]);
        for (long i = 0; i < n; i++)
            if (edgebuf_log(eb, rec, sizeof rec - 1) != EDGEBUF_OK) return 1;
        printf("%lld logged %ld\n", now_ns(), n);
    } else {
        long long end = now_ns() + 2000000000LL;
        long n = 0;
        while (now_ns() < end) {
            if (edgebuf_log(eb, rec, sizeof rec - 1) != EDGEBUF_OK) return 1;
            n++;
            sleep_ms(2);
        }
        printf("%lld logged %ld\n", now_ns(), n);
        sleep_ms(1500);
        printf("%lld idle\n", now_ns());
    }
    fflush(stdout);
    edgebuf_result r = edgebuf_close(eb, 0);
    printf("%lld closed %s\n", now_ns(), edgebuf_result_name(r));
    return 0;
}
