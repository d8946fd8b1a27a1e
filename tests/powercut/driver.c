/*
 * The program of the power-cut simulation (tests/powercut/run.py).
 *
 *   driver log PATH sync|async   logs {"n":N} from 2 threads until killed; after each
 *                                edgebuf_log that returned OK writes "N MONOTONIC_NS\n"
 *                                (async: commit.interval_ms=50, commit.sync_interval_ms=100,
 *                                ~2,000 records/s a thread; sync: as fast as fsyncs allow).
 *                                stdout must be opened for appending (O_APPEND).
 *   driver check PATH            opens the file as a power cut left it, prints
 *                                "pending_at_open N", logs {"n":-1} (its seq must be new),
 *                                closes; exits 0 when open and close worked
 */
#define _POSIX_C_SOURCE 200809L
#include "edgebuf.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static edgebuf_t *g_eb;
static unsigned long long g_next;
static int g_paced;

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static edgebuf_t *open_buffer(const char *path, const char *durability) {
    edgebuf_config_t *cfg = edgebuf_config_new();
    edgebuf_t *eb = NULL;
    if (cfg && edgebuf_config_set(cfg, "path", path) == EDGEBUF_OK &&
        edgebuf_config_set(cfg, "endpoint", "http://127.0.0.1:9/ingest") == EDGEBUF_OK &&
        edgebuf_config_set(cfg, "durability", durability) == EDGEBUF_OK &&
        edgebuf_config_set(cfg, "commit.interval_ms", "50") == EDGEBUF_OK &&
        edgebuf_config_set(cfg, "commit.sync_interval_ms", "100") == EDGEBUF_OK &&
        edgebuf_config_set(cfg, "retry.initial_ms", "60000") == EDGEBUF_OK &&
        edgebuf_config_set(cfg, "retry.max_ms", "60000") == EDGEBUF_OK) {
        edgebuf_result r = edgebuf_open(cfg, &eb);
        if (r != EDGEBUF_OK)
            printf("open %s: %s\n", edgebuf_result_name(r), edgebuf_last_error());
    }
    edgebuf_config_free(cfg);
    return eb;
}

static void *logger(void *arg) {
    (void)arg;
    for (;;) {
        unsigned long long n = __atomic_add_fetch(&g_next, 1, __ATOMIC_SEQ_CST);
        char rec[64], ack[64];
        int len = snprintf(rec, sizeof rec, "{\"n\":%llu}", n);
        if (edgebuf_log(g_eb, rec, (size_t)len) != EDGEBUF_OK) _exit(3);
        int alen = snprintf(ack, sizeof ack, "%llu %lld\n", n, now_ns());
        if (write(STDOUT_FILENO, ack, (size_t)alen) != alen) _exit(4);
        if (g_paced) { /* async: an inference loop's pace, ~2,000 records/s a thread */
            struct timespec ts = {0, 500000};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "log") == 0) {
        g_paced = strcmp(argv[3], "async") == 0;
        g_eb = open_buffer(argv[2], argv[3]);
        if (!g_eb) return 1;
        if (write(STDOUT_FILENO, "opened\n", 7) != 7) return 4;
        pthread_t t[2];
        for (int i = 0; i < 2; i++)
            if (pthread_create(&t[i], NULL, logger, NULL) != 0) return 1;
        for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "check") == 0) {
        edgebuf_t *eb = open_buffer(argv[2], "sync");
        if (!eb) return 1;
        edgebuf_status_t st = EDGEBUF_STATUS_INIT;
        if (edgebuf_status(eb, &st) != EDGEBUF_OK) return 1;
        printf("pending_at_open %llu\n", (unsigned long long)st.pending_at_open);
        if (edgebuf_log(eb, "{\"n\":-1}", 8) != EDGEBUF_OK) {
            printf("log: %s\n", edgebuf_last_error());
            return 1;
        }
        edgebuf_result r = edgebuf_close(eb, 0);
        if (r != EDGEBUF_OK && r != EDGEBUF_ERR_TIMEOUT) {
            printf("close: %s\n", edgebuf_last_error());
            return 1;
        }
        return 0;
    }
    fprintf(stderr, "usage: %s log PATH sync|async | check PATH\n", argv[0]);
    return 2;
}
