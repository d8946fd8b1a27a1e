/*
 * The logging program of the OTLP interop test (tests/otlp/run.sh): logs the lines of a file,
 * byte for byte, one record each, then flushes, so the checker knows exactly what was logged.
 * Settings: the defaults below, then the KEY=VALUE arguments (format, http.compression,
 * otlp.resource.*), then every EDGEBUF_* environment variable.
 *
 *   sender probe KEY=VALUE...
 *       Sets each key on a fresh config; prints "ok", or "refused KEY=VALUE: message" and
 *       exits 3 (a library that does not know the key or the value).
 *   sender send PATH ENDPOINT RECORDS PACE_US FLUSH_TIMEOUT_MS [KEY=VALUE...]
 *       Opens PATH, logs each line of RECORDS (without its '\n') with PACE_US microseconds
 *       between records, prints "logged N", flushes for at most FLUSH_TIMEOUT_MS, prints the
 *       status JSON and a summary, closes. Exits 0 when nothing is pending.
 */
#define _POSIX_C_SOURCE 200809L
#include "edgebuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int set(edgebuf_config_t *cfg, const char *key, const char *value) {
    if (edgebuf_config_set(cfg, key, value) == EDGEBUF_OK) return 0;
    printf("refused %s=%s: %s\n", key, value, edgebuf_last_error());
    fflush(stdout);
    return -1;
}

/* Applies KEY=VALUE arguments. */
static int set_pairs(edgebuf_config_t *cfg, int n, char **kv) {
    for (int i = 0; i < n; i++) {
        char *eq = strchr(kv[i], '=');
        if (!eq) {
            printf("bad argument %s: want KEY=VALUE\n", kv[i]);
            return -1;
        }
        *eq = '\0';
        int r = set(cfg, kv[i], eq + 1);
        *eq = '=';
        if (r != 0) return -1;
    }
    return 0;
}

static int send_file(char **argv, int npairs, char **pairs) {
    const char *path = argv[2], *endpoint = argv[3], *records = argv[4];
    long pace_us = strtol(argv[5], NULL, 10);
    unsigned long timeout_ms = strtoul(argv[6], NULL, 10);

    edgebuf_config_t *cfg = edgebuf_config_new();
    if (!cfg) return 1;
    edgebuf_t *eb = NULL;
    if (set(cfg, "path", path) == 0 && set(cfg, "endpoint", endpoint) == 0 &&
        set(cfg, "source.id", "otlp-test") == 0 && set(cfg, "retry.initial_ms", "50") == 0 &&
        set(cfg, "retry.max_ms", "500") == 0 && set(cfg, "batch.linger_ms", "20") == 0 &&
        set(cfg, "batch.max_records", "50") == 0 && set(cfg, "http.timeout_ms", "5000") == 0 &&
        set_pairs(cfg, npairs, pairs) == 0) {
        edgebuf_result r = edgebuf_config_from_env(cfg);
        if (r == EDGEBUF_OK) r = edgebuf_open(cfg, &eb);
        if (r != EDGEBUF_OK)
            printf("open %s: %s\n", edgebuf_result_name(r), edgebuf_last_error());
    }
    edgebuf_config_free(cfg);
    if (!eb) return 1;

    FILE *f = fopen(records, "rb");
    if (!f) {
        perror(records);
        edgebuf_close(eb, 0);
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

    edgebuf_result fr = edgebuf_flush(eb, (uint32_t)timeout_ms);
    char json[4096];
    size_t jlen = 0;
    edgebuf_result jr = edgebuf_status_json(eb, json, sizeof json, &jlen);
    printf("%s\n", jr == EDGEBUF_OK ? json : edgebuf_result_name(jr));
    edgebuf_status_t st = EDGEBUF_STATUS_INIT;
    edgebuf_result sr = edgebuf_status(eb, &st);
    edgebuf_result cr = edgebuf_close(eb, 5000);
    printf("sent: flush=%s close=%s delivered=%llu pending=%llu dead_letters=%llu\n",
           edgebuf_result_name(fr), edgebuf_result_name(cr),
           (unsigned long long)st.delivered_total, (unsigned long long)st.pending_records,
           (unsigned long long)st.dead_letter_records);
    if (fr != EDGEBUF_OK || cr != EDGEBUF_OK || sr != EDGEBUF_OK || st.pending_records != 0 ||
        st.dead_letter_records != 0)
        rc = 1;
    return rc;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "probe") == 0) {
        edgebuf_config_t *cfg = edgebuf_config_new();
        if (!cfg) return 1;
        int r = set_pairs(cfg, argc - 2, argv + 2);
        edgebuf_config_free(cfg);
        if (r != 0) return 3;
        printf("ok\n");
        return 0;
    }
    if (argc >= 7 && strcmp(argv[1], "send") == 0) return send_file(argv, argc - 7, argv + 7);
    fprintf(stderr,
            "usage: %s probe KEY=VALUE... | send PATH ENDPOINT RECORDS PACE_US FLUSH_TIMEOUT_MS "
            "[KEY=VALUE...]\n",
            argv[0]);
    return 2;
}
