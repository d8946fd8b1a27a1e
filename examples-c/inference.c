/*
 * An inference loop that logs every prediction through edgebuf.
 *
 * A tiny 3-class logistic-regression "model" classifies synthetic sensor readings; each
 * prediction (model, version, input hash, class scores, argmax, latency) is a ~300-byte JSON
 * record logged with edgebuf_log, which returns in microseconds whatever the network does.
 * A status line is printed every second (from edgebuf_status), and a summary at the end, after
 * edgebuf_flush and before edgebuf_close. SIGINT or SIGTERM end the loop early, cleanly.
 *
 *   inference [--endpoint URL] [--path FILE] [--count N] [--rate PER_S] [--source ID]
 *             [--flush-timeout-ms MS] [--quiet]
 *   inference ENDPOINT PATH [COUNT] [RATE_PER_S]          (the same, positionally)
 *
 * Configuration, later wins: the demo settings below, then every EDGEBUF_* environment
 * variable (edgebuf_config_from_env: EDGEBUF_ENDPOINT, EDGEBUF_PATH, EDGEBUF_HTTP_COMPRESSION,
 * ...), then the command line. COUNT defaults to 1000 and RATE to 200 per second (0 = as fast
 * as possible).
 *
 * The last line printed is "summary: key=value ..." (logged, delivered, dropped, dead_lettered,
 * pending, failed_attempts, peak_backlog, longest_offline_s, worst_log_us, log_errors, flush,
 * close). The exit status is 0 when every record was settled and nothing failed.
 */
#define _POSIX_C_SOURCE 200809L
#include "edgebuf.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t stop_requested = 0;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s) {
    if (s <= 0) return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL); /* EINTR (a signal) just ends the wait early */
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
    return c == EDGEBUF_CONNECTIVITY_ONLINE    ? "online"
           : c == EDGEBUF_CONNECTIVITY_OFFLINE ? "OFFLINE"
                                               : "unknown";
}

static void usage(FILE *f, const char *prog) {
    fprintf(f,
            "usage: %s [--endpoint URL] [--path FILE] [--count N] [--rate PER_S] [--source ID]\n"
            "          [--flush-timeout-ms MS] [--quiet]\n"
            "       %s ENDPOINT PATH [COUNT] [RATE_PER_S]\n"
            "Logs COUNT predictions (default 1000) at RATE per second (default 200; 0 = as fast as\n"
            "possible) to the edgebuf buffer FILE, which delivers them to URL. EDGEBUF_* environment\n"
            "variables set any configuration key; the command line wins over them.\n",
            prog, prog);
}

/* Parses a whole decimal number (>= 0) or returns -1. long long: long is 32 bits on armv7. */
static long long parse_count(const char *s) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    return (errno || end == s || *end || v < 0) ? -1 : v;
}

static double parse_rate(const char *s) {
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    return (errno || end == s || *end || !(v >= 0) || isinf(v)) ? -1.0 : v;
}

/* The "model": 3 classes, 4 features, softmax over a linear layer. */
static const double W[3][4] = {{1.2, -0.4, 0.3, 0.0}, {-0.8, 1.1, -0.2, 0.5}, {0.1, -0.3, 0.9, -1.0}};
static const double B[3] = {0.1, -0.2, 0.05};
static const char *LABELS[3] = {"normal", "warning", "fault"};

/* What the loop tracks from edgebuf_status. */
struct tracker {
    uint64_t peak_backlog;
    double offline_since; /* < 0 while not offline */
    double longest_offline;
};

static void track(struct tracker *t, const edgebuf_status_t *st, double now) {
    if (st->pending_records > t->peak_backlog) t->peak_backlog = st->pending_records;
    if (st->connectivity == EDGEBUF_CONNECTIVITY_OFFLINE) {
        if (t->offline_since < 0) t->offline_since = now;
        if (now - t->offline_since > t->longest_offline) t->longest_offline = now - t->offline_since;
    } else if (st->connectivity == EDGEBUF_CONNECTIVITY_ONLINE) {
        t->offline_since = -1.0;
    }
}

static void print_status(const edgebuf_status_t *st, double elapsed, const char *phase) {
    printf("[%5.1fs] %-7s logged %6llu  pending %5llu  delivered %6llu  failed attempts %3llu  %s",
           elapsed, phase, (unsigned long long)st->logged_total, (unsigned long long)st->pending_records,
           (unsigned long long)st->delivered_total, (unsigned long long)st->failed_attempts_total,
           conn_name(st->connectivity));
    /* Offline after a refused connection, the last answer (a 200) says nothing. */
    int stale_2xx = st->connectivity == EDGEBUF_CONNECTIVITY_OFFLINE && st->last_http_status / 100 == 2;
    if (st->last_http_status && !stale_2xx) printf(" (last HTTP %d)", st->last_http_status);
    if (st->next_retry_in_ms) printf(", retry in %u ms", st->next_retry_in_ms);
    printf("\n");
    fflush(stdout);
}

int main(int argc, char **argv) {
    const char *endpoint = NULL, *path = NULL, *source = NULL;
    long long count = 1000, flush_timeout_ms = 30000;
    double rate = 200.0;
    int quiet = 0, npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout, argv[0]);
            return 0;
        }
        if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            quiet = 1;
            continue;
        }
        if (strncmp(a, "--", 2) == 0) {
            static const char *const names[] = {"--endpoint", "--path", "--count", "--rate", "--source",
                                                "--flush-timeout-ms"};
            int which = -1;
            for (int k = 0; k < (int)(sizeof names / sizeof names[0]); k++) {
                size_t n = strlen(names[k]);
                if (strncmp(a, names[k], n) == 0 && (a[n] == '\0' || a[n] == '=')) {
                    which = k;
                    val = a[n] == '=' ? a + n + 1 : (i + 1 < argc ? argv[++i] : NULL);
                    break;
                }
            }
            if (which < 0 || val == NULL) {
                fprintf(stderr, "%s: %s %s\n", argv[0], which < 0 ? "unknown option" : "missing value for", a);
                usage(stderr, argv[0]);
                return 2;
            }
            switch (which) {
            case 0: endpoint = val; break;
            case 1: path = val; break;
            case 2: count = parse_count(val); break;
            case 3: rate = parse_rate(val); break;
            case 4: source = val; break;
            case 5: flush_timeout_ms = parse_count(val); break;
            }
            continue;
        }
        switch (npos++) { /* positional: ENDPOINT PATH [COUNT] [RATE] */
        case 0: endpoint = a; break;
        case 1: path = a; break;
        case 2: count = parse_count(a); break;
        case 3: rate = parse_rate(a); break;
        default:
            fprintf(stderr, "%s: unexpected argument %s\n", argv[0], a);
            usage(stderr, argv[0]);
            return 2;
        }
    }
    if (count < 0 || rate < 0 || flush_timeout_ms < 0 || flush_timeout_ms > 4000000000LL) {
        fprintf(stderr, "%s: --count and --flush-timeout-ms take a whole number >= 0, --rate a number >= 0\n",
                argv[0]);
        return 2;
    }

    /* Settings for a lively demo (short commit interval, retries at most 1 s apart); the
     * library's own defaults suit a device better. EDGEBUF_* variables override them. */
    edgebuf_config_t *cfg = edgebuf_config_new();
    if (!cfg) return 1;
    if (set(cfg, "source.id", "demo-cam-01") || set(cfg, "commit.interval_ms", "200") ||
        set(cfg, "retry.initial_ms", "100") || set(cfg, "retry.max_ms", "1000") ||
        set(cfg, "batch.linger_ms", "50")) {
        edgebuf_config_free(cfg);
        return 1;
    }
    edgebuf_result r = edgebuf_config_from_env(cfg);
    if (r != EDGEBUF_OK) {
        fprintf(stderr, "environment: %s: %s\n", edgebuf_result_name(r), edgebuf_last_error());
        edgebuf_config_free(cfg);
        return 1;
    }
    if ((endpoint && set(cfg, "endpoint", endpoint)) || (path && set(cfg, "path", path)) ||
        (source && set(cfg, "source.id", source))) {
        edgebuf_config_free(cfg);
        return 1;
    }
    edgebuf_t *eb = NULL;
    r = edgebuf_open(cfg, &eb);
    edgebuf_config_free(cfg);
    if (r != EDGEBUF_OK) {
        fprintf(stderr, "edgebuf_open: %s: %s\n", edgebuf_result_name(r), edgebuf_last_error());
        if (r == EDGEBUF_ERR_INVALID_CONFIG && (!endpoint || !path))
            fprintf(stderr, "(give --endpoint and --path, or set EDGEBUF_ENDPOINT and EDGEBUF_PATH)\n");
        return 1;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    if (rate > 0)
        printf("edgebuf %s: logging %lld predictions at %g/s\n", edgebuf_version(), count, rate);
    else
        printf("edgebuf %s: logging %lld predictions as fast as possible\n", edgebuf_version(), count);
    fflush(stdout);

    struct tracker tr = {0, -1.0, 0.0};
    uint64_t seed = 0x2545F4914F6CDD1DULL;
    double start = now_s(), next_print = start + 1.0, worst_log_us = 0.0;
    long log_errors = 0;
    long long i = 0;
    for (; i < count && !stop_requested; i++) {
        double t0 = now_s();
        double x[4], z[3], sum = 0.0, scores[3];
        uint64_t h = 1469598103934665603ULL; /* FNV-1a of the quantised inputs */
        for (int k = 0; k < 4; k++) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            x[k] = (double)(seed % 10000) / 5000.0 - 1.0;
            h = (h ^ (seed % 10000)) * 1099511628211ULL;
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
                         "{\"model\":\"sensor-logreg\",\"model_version\":\"1.4.2\",\"frame\":%lld,"
                         "\"input_hash\":\"%016llx\",\"inputs\":[%.4f,%.4f,%.4f,%.4f],"
                         "\"scores\":{\"normal\":%.5f,\"warning\":%.5f,\"fault\":%.5f},"
                         "\"argmax\":%d,\"label\":\"%s\",\"confidence\":%.5f,\"latency_us\":%.1f}",
                         i, (unsigned long long)h, x[0], x[1], x[2], x[3], scores[0], scores[1], scores[2],
                         argmax, LABELS[argmax], scores[argmax], infer_us);
        if (n < 0 || n >= (int)sizeof rec) {
            fprintf(stderr, "record %lld does not fit its buffer\n", i);
            log_errors++;
            continue;
        }
        double l0 = now_s();
        r = edgebuf_log(eb, rec, (size_t)n);
        double log_us = (now_s() - l0) * 1e6;
        if (log_us > worst_log_us) worst_log_us = log_us;
        if (r != EDGEBUF_OK) {
            log_errors++;
            fprintf(stderr, "edgebuf_log: %s: %s\n", edgebuf_result_name(r), edgebuf_last_error());
        }
        edgebuf_status_t st = EDGEBUF_STATUS_INIT;
        double t = now_s();
        if (edgebuf_status(eb, &st) == EDGEBUF_OK) {
            track(&tr, &st, t);
            if (t >= next_print) {
                if (!quiet) print_status(&st, t - start, "logging");
                while (next_print <= t) next_print += 1.0;
            }
        }
        if (rate > 0) sleep_s(start + (double)(i + 1) / rate - now_s());
    }
    if (stop_requested) {
        fprintf(stderr, "stopping after %lld records (signal)\n", i);
        if (flush_timeout_ms > 2000) flush_timeout_ms = 2000;
    }

    /* Wait until everything logged is delivered (or the timeout), with a status line a second. */
    double flush_end = now_s() + (double)flush_timeout_ms / 1000.0;
    for (;;) {
        double left_ms = (flush_end - now_s()) * 1000.0;
        uint32_t slice = left_ms <= 0 ? 0 : left_ms < 200 ? (uint32_t)left_ms : 200;
        r = edgebuf_flush(eb, slice);
        edgebuf_status_t st = EDGEBUF_STATUS_INIT;
        double t = now_s();
        if (edgebuf_status(eb, &st) == EDGEBUF_OK) {
            track(&tr, &st, t);
            if (t >= next_print || r == EDGEBUF_OK) {
                if (!quiet) print_status(&st, t - start, "flush");
                while (next_print <= t) next_print += 1.0;
            }
        }
        if (r != EDGEBUF_ERR_TIMEOUT || slice == 0) break;
    }
    if (r != EDGEBUF_OK) fprintf(stderr, "edgebuf_flush: %s: %s\n", edgebuf_result_name(r), edgebuf_last_error());

    edgebuf_status_t st = EDGEBUF_STATUS_INIT;
    edgebuf_status(eb, &st);
    /* Close writes what is still in memory to disk and tries to deliver for at most this long;
     * what stays pending is sent after the next open. */
    edgebuf_result rc = edgebuf_close(eb, stop_requested ? 1000 : 5000);
    if (rc != EDGEBUF_OK) fprintf(stderr, "edgebuf_close: %s: %s\n", edgebuf_result_name(rc), edgebuf_last_error());
    printf("summary: logged=%llu delivered=%llu dropped=%llu dead_lettered=%llu pending=%llu "
           "failed_attempts=%llu peak_backlog=%llu longest_offline_s=%.1f worst_log_us=%.1f "
           "log_errors=%ld flush=%s close=%s\n",
           (unsigned long long)st.logged_total, (unsigned long long)st.delivered_total,
           (unsigned long long)st.dropped_total, (unsigned long long)st.dead_lettered_total,
           (unsigned long long)st.pending_records, (unsigned long long)st.failed_attempts_total,
           (unsigned long long)tr.peak_backlog, tr.longest_offline, worst_log_us, log_errors,
           edgebuf_result_name(r), edgebuf_result_name(rc));
    return (r == EDGEBUF_OK && rc == EDGEBUF_OK && log_errors == 0 && !stop_requested) ? 0 : 1;
}
