/*
 * An inference loop that logs every prediction through edgebuf.
 *
 * A tiny 3-class logistic-regression "model" classifies synthetic sensor readings; each
 * prediction (model, version, input hash, scores, argmax, latency) is logged with edgebuf_log,
 * which returns in about a microsecond whatever the network does. A status line is printed
 * every second, and a summary at the end.
 *
 *   inference ENDPOINT PATH [COUNT] [RATE_PER_S]
 *
 * EDGEBUF_* environment variables (edgebuf_config_from_env) override the defaults set here.
 */
#define _POSIX_C_SOURCE 200809L
#include "edgebuf.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int set(edgebuf_config_t *cfg, const char *key, const char *value) {
    edgebuf_result r = edgebuf_config_set(cfg, key, value);
    if (r != EDGEBUF_OK) {
        fprintf(stderr, "config %s: %s: %s\n", key, edgebuf_result_name(r), edgebuf_last_error());
        return -1;
    }
    return 0;
}

static const char *conn_name(uint32_t c) {
    return c == EDGEBUF_CONNECTIVITY_ONLINE ? "online" : c == EDGEBUF_CONNECTIVITY_OFFLINE ? "offline" : "unknown";
}

/* The "model": 3 classes, 4 features. */
static const double W[3][4] = {{1.2, -0.4, 0.3, 0.0}, {-0.8, 1.1, -0.2, 0.5}, {0.1, -0.3, 0.9, -1.0}};
static const double B[3] = {0.1, -0.2, 0.05};

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s ENDPOINT PATH [COUNT] [RATE_PER_S]\n", argv[0]);
        return 2;
    }
    long count = argc > 3 ? atol(argv[3]) : 1000;
    double rate = argc > 4 ? atof(argv[4]) : 200.0;

    edgebuf_config_t *cfg = edgebuf_config_new();
    if (!cfg) return 1;
    if (set(cfg, "endpoint", argv[1]) || set(cfg, "path", argv[2]) || set(cfg, "source.id", "demo-cam-01") ||
        set(cfg, "commit.interval_ms", "200") || set(cfg, "retry.initial_ms", "100") ||
        set(cfg, "retry.max_ms", "1000") || set(cfg, "batch.linger_ms", "50")) {
        edgebuf_config_free(cfg);
        return 1;
    }
    edgebuf_result r = edgebuf_config_from_env(cfg);
    if (r != EDGEBUF_OK) {
        fprintf(stderr, "environment: %s\n", edgebuf_last_error());
        edgebuf_config_free(cfg);
        return 1;
    }
    edgebuf_t *eb = NULL;
    r = edgebuf_open(cfg, &eb);
    edgebuf_config_free(cfg);
    if (r != EDGEBUF_OK) {
        fprintf(stderr, "edgebuf_open: %s: %s\n", edgebuf_result_name(r), edgebuf_last_error());
        return 1;
    }

    uint64_t seed = 0x2545F4914F6CDD1DULL, peak_backlog = 0;
    double start = now_s(), next_print = start + 1.0, worst_log_us = 0.0;
    long failed = 0;
    for (long i = 0; i < count; i++) {
        double t0 = now_s();
        double x[4], z[3], sum = 0.0, scores[3];
        uint64_t h = 1469598103934665603ULL;
        for (int k = 0; k < 4; k++) {
            seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17;
            x[k] = (double)(seed % 10000) / 5000.0 - 1.0;
            h = (h ^ (seed & 0xffff)) * 1099511628211ULL;
        }
        int argmax = 0;
        for (int c = 0; c < 3; c++) {
            z[c] = B[c];
            for (int k = 0; k < 4; k++) z[c] += W[c][k] * x[k];
            z[c] = exp(z[c]);
            sum += z[c];
        }
        for (int c = 0; c < 3; c++) {
            scores[c] = z[c] / sum;
            if (scores[c] > scores[argmax]) argmax = c;
        }
        double infer_us = (now_s() - t0) * 1e6;
        char rec[512];
        int n = snprintf(rec, sizeof rec,
                         "{\"model\":\"sensor-logreg\",\"model_version\":\"1.4.2\",\"frame\":%ld,"
                         "\"input_hash\":\"%016llx\",\"inputs\":[%.4f,%.4f,%.4f,%.4f],"
                         "\"scores\":[%.5f,%.5f,%.5f],\"argmax\":%d,\"label\":\"%s\",\"latency_us\":%.1f}",
                         i, (unsigned long long)h, x[0], x[1], x[2], x[3], scores[0], scores[1], scores[2],
                         argmax, argmax == 0 ? "normal" : argmax == 1 ? "warning" : "fault", infer_us);
        double l0 = now_s();
        r = edgebuf_log(eb, rec, (size_t)n);
        double log_us = (now_s() - l0) * 1e6;
        if (log_us > worst_log_us) worst_log_us = log_us;
        if (r != EDGEBUF_OK) {
            failed++;
            fprintf(stderr, "edgebuf_log: %s: %s\n", edgebuf_result_name(r), edgebuf_last_error());
        }
        double t = now_s();
        if (t >= next_print) {
            edgebuf_status_t st = EDGEBUF_STATUS_INIT;
            if (edgebuf_status(eb, &st) == EDGEBUF_OK) {
                if (st.pending_records > peak_backlog) peak_backlog = st.pending_records;
                printf("[%5.1fs] logged %llu  pending %llu  delivered %llu  failed attempts %llu  %s (last HTTP %d)\n",
                       t - start, (unsigned long long)st.logged_total, (unsigned long long)st.pending_records,
                       (unsigned long long)st.delivered_total, (unsigned long long)st.failed_attempts_total,
                       conn_name(st.connectivity), st.last_http_status);
                fflush(stdout);
            }
            next_print += 1.0;
        }
        if (rate > 0) {
            double target = start + (double)(i + 1) / rate, wait = target - now_s();
            if (wait > 0) {
                struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
                nanosleep(&ts, NULL);
            }
        }
    }

    r = edgebuf_flush(eb, 30000);
    edgebuf_status_t st = EDGEBUF_STATUS_INIT;
    edgebuf_status(eb, &st);
    printf("summary: logged=%llu delivered=%llu dropped=%llu dead_lettered=%llu pending=%llu "
           "failed_attempts=%llu peak_backlog=%llu worst_log_us=%.1f log_errors=%ld flush=%s\n",
           (unsigned long long)st.logged_total, (unsigned long long)st.delivered_total,
           (unsigned long long)st.dropped_total, (unsigned long long)st.dead_lettered_total,
           (unsigned long long)st.pending_records, (unsigned long long)st.failed_attempts_total,
           (unsigned long long)peak_backlog, worst_log_us, failed, edgebuf_result_name(r));
    edgebuf_result rc = edgebuf_close(eb, 5000);
    if (rc != EDGEBUF_OK) fprintf(stderr, "edgebuf_close: %s: %s\n", edgebuf_result_name(rc), edgebuf_last_error());
    return (r == EDGEBUF_OK && rc == EDGEBUF_OK && failed == 0) ? 0 : 1;
}
