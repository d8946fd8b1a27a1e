/*
 * The child of the kill -9 test that runs on every target (tests/targets/crash.sh), in C so
 * that it runs under qemu-user like any program a user cross-compiles.
 *
 *   crash_child log PATH ENDPOINT CYCLE THREADS
 *       Opens PATH in durability=sync and logs {"cycle":CYCLE,"n":N} from THREADS threads
 *       until it is killed. After each edgebuf_log that returned OK it writes "CYCLE N\n" to
 *       stdout with one write(2): that line is the acknowledgement the test holds edgebuf to.
 *       Prints "opened\n" first.
 *   crash_child drain PATH ENDPOINT TIMEOUT_MS
 *       Opens PATH, flushes for at most TIMEOUT_MS, prints the status JSON, closes. Exits 0
 *       when nothing is pending (everything acknowledged before the kills was delivered).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "edgebuf.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static edgebuf_t *g_eb;
static long g_cycle;
static unsigned long long g_next; /* the next N to log (atomic) */

static int set(edgebuf_config_t *cfg, const char *key, const char *value) {
    edgebuf_result r = edgebuf_config_set(cfg, key, value);
    if (r != EDGEBUF_OK) {
        fprintf(stderr, "crash_child: config %s: %s: %s\n", key, edgebuf_result_name(r),
                edgebuf_last_error());
        return -1;
    }
    return 0;
}

static edgebuf_t *open_buffer(const char *path, const char *endpoint, const char *durability) {
    edgebuf_config_t *cfg = edgebuf_config_new();
    if (!cfg) return NULL;
    edgebuf_t *eb = NULL;
    if (set(cfg, "path", path) == 0 && set(cfg, "endpoint", endpoint) == 0 &&
        set(cfg, "durability", durability) == 0 && set(cfg, "source.id", "crash-child") == 0 &&
        set(cfg, "retry.initial_ms", "50") == 0 && set(cfg, "retry.max_ms", "500") == 0 &&
        set(cfg, "batch.linger_ms", "20") == 0) {
        edgebuf_result r = edgebuf_open(cfg, &eb);
        if (r != EDGEBUF_OK)
            fprintf(stderr, "crash_child: edgebuf_open: %s: %s\n", edgebuf_result_name(r),
                    edgebuf_last_error());
    }
    edgebuf_config_free(cfg);
    return eb;
}

static void *logger(void *arg) {
    (void)arg;
    for (;;) {
        unsigned long long n = __atomic_add_fetch(&g_next, 1, __ATOMIC_SEQ_CST);
        char rec[96], ack[64];
        int len = snprintf(rec, sizeof rec, "{\"cycle\":%ld,\"n\":%llu}", g_cycle, n);
        edgebuf_result r = edgebuf_log(g_eb, rec, (size_t)len);
        if (r != EDGEBUF_OK) {
            fprintf(stderr, "crash_child: edgebuf_log: %s: %s\n", edgebuf_result_name(r),
                    edgebuf_last_error());
            _exit(3);
        }
        int alen = snprintf(ack, sizeof ack, "%ld %llu\n", g_cycle, n);
        if (write(STDOUT_FILENO, ack, (size_t)alen) != alen) _exit(4);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc == 6 && strcmp(argv[1], "log") == 0) {
        g_cycle = atol(argv[4]);
        int threads = atoi(argv[5]);
        if (threads < 1 || threads > 16) return 2;
        g_eb = open_buffer(argv[2], argv[3], "sync");
        if (!g_eb) return 1;
        if (write(STDOUT_FILENO, "opened\n", 7) != 7) return 4;
        pthread_t t[16];
        for (int i = 0; i < threads; i++)
            if (pthread_create(&t[i], NULL, logger, NULL) != 0) return 1;
        for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
        return 0; /* not reached: the loggers run until the test kills this process */
    }
    if (argc == 5 && strcmp(argv[1], "drain") == 0) {
        edgebuf_t *eb = open_buffer(argv[2], argv[3], "async");
        if (!eb) return 1;
        edgebuf_result fr = edgebuf_flush(eb, (uint32_t)strtoul(argv[4], NULL, 10));
        char json[2048];
        size_t len = 0;
        edgebuf_result jr = edgebuf_status_json(eb, json, sizeof json, &len);
        printf("%s\n", jr == EDGEBUF_OK ? json : edgebuf_result_name(jr));
        edgebuf_status_t st = EDGEBUF_STATUS_INIT;
        edgebuf_result sr = edgebuf_status(eb, &st);
        edgebuf_result cr = edgebuf_close(eb, 5000);
        printf("drain: flush=%s close=%s pending_at_open=%llu delivered=%llu pending=%llu\n",
               edgebuf_result_name(fr), edgebuf_result_name(cr),
               (unsigned long long)st.pending_at_open, (unsigned long long)st.delivered_total,
               (unsigned long long)st.pending_records);
        return (fr == EDGEBUF_OK && cr == EDGEBUF_OK && sr == EDGEBUF_OK && st.pending_records == 0)
                   ? 0
                   : 1;
    }
    fprintf(stderr, "usage: %s log PATH ENDPOINT CYCLE THREADS | drain PATH ENDPOINT TIMEOUT_MS\n",
            argv[0]);
    return 2;
}
