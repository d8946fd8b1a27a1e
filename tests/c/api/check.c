/* The check counters and macros' functions, time, and the helpers every area logs through. */
#include "check.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int g_checks;
int g_failures;
int g_small;
uint64_t g_logged_ok;

void check_(int ok, const char *expr, const char *file, int line) {
    ADD(&g_checks, 1);
    if (!ok) {
        ADD(&g_failures, 1);
        fprintf(stderr, "%s:%d: CHECK failed: %s (edgebuf_last_error: \"%s\")\n", file, line,
                expr, edgebuf_last_error());
    }
}

int check_rc_(edgebuf_result got, edgebuf_result want, const char *expr, const char *file,
              int line) {
    ADD(&g_checks, 1);
    if (got != want) {
        ADD(&g_failures, 1);
        fprintf(stderr, "%s:%d: CHECK failed: %s returned %s (%d), expected %s "
                        "(edgebuf_last_error: \"%s\")\n",
                file, line, expr, edgebuf_result_name(got), (int)got, edgebuf_result_name(want),
                edgebuf_last_error());
        return 0;
    }
    return 1;
}

void die(const char *what, const char *file, int line) {
    fprintf(stderr, "%s:%d: FATAL: %s (edgebuf_last_error: \"%s\")\n", file, line, what,
            edgebuf_last_error());
    fprintf(stdout, "api_test: FAILED (fatal: %s) after %d checks\n", what, LOAD(&g_checks));
    fflush(NULL);
    _exit(2);
}

int last_error_has(const char *needle) {
    const char *e = edgebuf_last_error();
    return e != NULL && strstr(e, needle) != NULL;
}

/* ---- time -------------------------------------------------------------------------------- */

uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void sleep_ms(unsigned ms) {
    struct timespec ts;
    ts.tv_sec = (time_t)(ms / 1000u);
    ts.tv_nsec = (long)(ms % 1000u) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int wait_until(const uint64_t *counter, uint64_t want, unsigned timeout_ms) {
    uint64_t deadline = now_ms() + timeout_ms;
    while (LOAD(counter) < want) {
        if (now_ms() > deadline) {
            return 0;
        }
        sleep_ms(5);
    }
    return 1;
}

/* ---- logging helpers ------------------------------------------------------------------- */

edgebuf_result log_exact(edgebuf_t *h, const char *s, size_t n) {
    char *p = (char *)malloc(n > 0 ? n : 1);
    if (p == NULL) {
        DIE("malloc");
    }
    memcpy(p, s, n);
    edgebuf_result rc = edgebuf_log(h, p, n);
    free(p);
    if (rc == EDGEBUF_OK) {
        ADD(&g_logged_ok, 1);
    }
    return rc;
}

edgebuf_result log_str(edgebuf_t *h, const char *s) { return log_exact(h, s, strlen(s)); }

int invariant_holds(const edgebuf_status_t *st) {
    uint64_t in = st->pending_at_open + st->logged_total;
    uint64_t out = st->delivered_total + st->dropped_total + st->dead_lettered_total;
    return in >= out && st->pending_records == in - out;
}
