/*
 * The logging program of the tests that kill, cut or damage a buffer (tests/targets/crash.sh,
 * tests/powercut, tests/filefuzz, tests/bindmount) and of the OTLP interop test (tests/otlp), in
 * C so that it runs on every target like a user's program.
 * Settings: the defaults below, then every EDGEBUF_* environment variable
 * (edgebuf_config_from_env), so each test sets the intervals it needs.
 *
 *   logger log PATH ENDPOINT sync|async TAG THREADS
 *       Logs {"tag":TAG,"n":N} from THREADS threads until killed. After each edgebuf_log that
 *       returned OK, writes "TAG N MONOTONIC_NS\n" to stdout with one write(2) (stdout must be
 *       opened for appending): the acknowledgement the test holds edgebuf to. Prints "opened"
 *       first. In async mode each thread logs about 2,000 records a second (an inference
 *       loop's pace); in sync mode as fast as fsyncs allow.
 *   logger drain PATH ENDPOINT TIMEOUT_MS
 *       Opens PATH, flushes for at most TIMEOUT_MS, prints the status JSON and a summary,
 *       closes. Exits 0 when nothing is pending.
 *   logger send PATH ENDPOINT RECORDS PACE_US TIMEOUT_MS
 *       Opens PATH, logs each line of the file RECORDS byte for byte (without its '\n'), with
 *       PACE_US microseconds between records, prints "logged N", then finishes as drain does.
 *       Exits 0 when every line was logged, nothing is pending and nothing was dead-lettered.
 *   logger check PATH
 *       Opens PATH (endpoint down), prints "pending_at_open N", logs {"n":-1} (its seq must be
 *       new), closes. Exits 0 when open and close worked; otherwise prints
 *       "open CODE: message" and exits 1.
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
static long g_tag;
static int g_paced;
static unsigned long long g_next; /* the next N to log (atomic) */

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int set(edgebuf_config_t *cfg, const char *key, const char *value) {
    if (edgebuf_config_set(cfg, key, value) == EDGEBUF_OK) return 0;
    fprintf(stderr, "logger: config %s: %s\n", key, edgebuf_last_error());
    return -1;
}

static edgebuf_t *open_buffer(const char *path, const char *endpoint, const char *durability) {
    edgebuf_config_t *cfg = edgebuf_config_new();
    if (!cfg) return NULL;
    edgebuf_t *eb = NULL;
    if (set(cfg, "path", path) == 0 && set(cfg, "endpoint", endpoint) == 0 &&
        set(cfg, "durability", durability) == 0 && set(cfg, "source.id", "logger") == 0 &&
        set(cfg, "retry.initial_ms", "50") == 0 && set(cfg, "retry.max_ms", "500") == 0 &&
        set(cfg, "batch.linger_ms", "20") == 0) {
        edgebuf_result r = edgebuf_config_from_env(cfg);
        if (r == EDGEBUF_OK) r = edgebuf_open(cfg, &eb);
        if (r != EDGEBUF_OK)
            printf("open %s: %s\n", edgebuf_result_name(r), edgebuf_last_error());
    }
    edgebuf_config_free(cfg);
    return eb;
}

static void *log_loop(void *arg) {
    (void)arg;
    for (;;) {
        unsigned long long n = __atomic_add_fetch(&g_next, 1, __ATOMIC_SEQ_CST);
        char rec[96], ack[96];
        int len = snprintf(rec, sizeof rec, "{\"tag\":%ld,\"n\":%llu}", g_tag, n);
        edgebuf_result r = edgebuf_log(g_eb, rec, (size_t)len);
        if (r != EDGEBUF_OK) {
            fprintf(stderr, "logger: edgebuf_log: %s: %s\n", edgebuf_result_name(r),
                    edgebuf_last_error());
            _exit(3);
        }
        int alen = snprintf(ack, sizeof ack, "%ld %llu %lld\n", g_tag, n, now_ns());
        if (write(STDOUT_FILENO, ack, (size_t)alen) != alen) _exit(4);
        if (g_paced) {
            struct timespec ts = {0, 500000};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

/* Flushes for at most timeout_ms, prints the status JSON and a summary, closes; *st is the
 * status before close. 0 when flush, status and close worked and nothing is pending. */
static int finish(edgebuf_t *eb, unsigned long timeout_ms, edgebuf_status_t *st) {
    edgebuf_result fr = edgebuf_flush(eb, (uint32_t)timeout_ms);
    char json[4096];
    size_t len = 0;
    edgebuf_result jr = edgebuf_status_json(eb, json, sizeof json, &len);
    printf("%s\n", jr == EDGEBUF_OK ? json : edgebuf_result_name(jr));
    edgebuf_result sr = edgebuf_status(eb, st);
    edgebuf_result cr = edgebuf_close(eb, 5000);
    printf("drain: flush=%s close=%s pending_at_open=%llu delivered=%llu pending=%llu "
           "dead_letters=%llu\n",
           edgebuf_result_name(fr), edgebuf_result_name(cr),
           (unsigned long long)st->pending_at_open, (unsigned long long)st->delivered_total,
           (unsigned long long)st->pending_records, (unsigned long long)st->dead_letter_records);
    return (fr == EDGEBUF_OK && cr == EDGEBUF_OK && sr == EDGEBUF_OK && st->pending_records == 0)
               ? 0
               : 1;
}

/* Logs each line of the file `records` byte for byte, pace_us apart; prints "logged N". */
static int log_lines(edgebuf_t *eb, const char *records, long pace_us) {
    FILE *f = fopen(records, "rb");
    if (!f) {
        perror(records);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    unsigned long n = 0;
    int rc = 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        if (line[len - 1] == '\n') len--;
        edgebuf_result r = edgebuf_log(eb, line, (size_t)len);
        if (r != EDGEBUF_OK) {
            printf("log line %lu: %s: %s\n", n + 1, edgebuf_result_name(r), edgebuf_last_error());
            rc = 1;
            break;
        }
        n++;
        if (pace_us > 0) {
            struct timespec ts = {pace_us / 1000000, (pace_us % 1000000) * 1000};
            nanosleep(&ts, NULL);
        }
    }
    free(line);
    fclose(f);
    printf("logged %lu\n", n);
    fflush(stdout);
    return rc;
}

int main(int argc, char **argv) {
    if (argc == 7 && strcmp(argv[1], "log") == 0) {
        g_tag = atol(argv[5]);
        int threads = atoi(argv[6]);
        if (threads < 1 || threads > 16) return 2;
        g_paced = strcmp(argv[4], "async") == 0;
        g_eb = open_buffer(argv[2], argv[3], argv[4]);
        if (!g_eb) return 1;
        if (write(STDOUT_FILENO, "opened\n", 7) != 7) return 4;
        pthread_t t[16];
        for (int i = 0; i < threads; i++)
            if (pthread_create(&t[i], NULL, log_loop, NULL) != 0) return 1;
        for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
        return 0; /* not reached: the loggers run until the test kills this process */
    }
    if (argc == 5 && strcmp(argv[1], "drain") == 0) {
        edgebuf_t *eb = open_buffer(argv[2], argv[3], "async");
        if (!eb) return 1;
        edgebuf_status_t st = EDGEBUF_STATUS_INIT;
        return finish(eb, strtoul(argv[4], NULL, 10), &st);
    }
    if (argc == 7 && strcmp(argv[1], "send") == 0) {
        edgebuf_t *eb = open_buffer(argv[2], argv[3], "async");
        if (!eb) return 1;
        int rc = log_lines(eb, argv[4], strtol(argv[5], NULL, 10));
        edgebuf_status_t st = EDGEBUF_STATUS_INIT;
        if (finish(eb, strtoul(argv[6], NULL, 10), &st) != 0 || st.dead_letter_records != 0) rc = 1;
        return rc;
    }
    if (argc == 3 && strcmp(argv[1], "check") == 0) {
        edgebuf_t *eb = open_buffer(argv[2], "http://127.0.0.1:9/ingest", "sync");
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
    fprintf(stderr,
            "usage: %s log PATH ENDPOINT sync|async TAG THREADS | drain PATH ENDPOINT TIMEOUT_MS "
            "| send PATH ENDPOINT RECORDS PACE_US TIMEOUT_MS | check PATH\n",
            argv[0]);
    return 2;
}
