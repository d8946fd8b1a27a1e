/* Logging: edgebuf_log's argument and record checks (JSON, UTF-8, nesting, record.max_bytes,
   huge lengths), sync/flush/retry_now/close with NULL, and several threads logging at once
   while the accounting invariant holds at every status. log_worker is also the logger that
   lifecycle.c runs while the handle closes. */
#include "check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A JSON value nested `depth` deep: arrays, or objects and arrays alternating. */
static char *nested(int depth, int objects, size_t *len) {
    size_t cap = (size_t)depth * 8 + 16;
    char *s = (char *)malloc(cap);
    size_t n = 0;
    if (s == NULL) {
        DIE("malloc");
    }
    for (int i = 0; i < depth; i++) {
        if (objects && i % 2 == 0) {
            memcpy(s + n, "{\"a\":", 5);
            n += 5;
        } else {
            s[n++] = '[';
        }
    }
    s[n++] = '1';
    for (int i = depth - 1; i >= 0; i--) {
        s[n++] = (objects && i % 2 == 0) ? '}' : ']';
    }
    *len = n;
    return s;
}

void *log_worker(void *arg) {
    log_job *j = (log_job *)arg;
    char rec[256];
    char pad[101];
    memset(pad, 'p', 100);
    pad[100] = '\0';
    for (int i = 0; j->n == 0 || i < j->n; i++) {
        int len = snprintf(rec, sizeof rec, "{\"thread\":%d,\"i\":%d,\"pad\":\"%s\"}", j->id, i,
                           pad);
        edgebuf_result rc = log_exact(j->h, rec, (size_t)len);
        if (rc == EDGEBUF_OK) {
            ADD(&j->ok, 1);
        } else if (rc == EDGEBUF_ERR_CLOSED && j->n == 0) {
            ADD(&j->closed, 1);
            break;
        } else {
            ADD(&j->other, 1);
            j->last_other = rc;
            break;
        }
        if (j->n == 0) {
            if (now_ms() > j->deadline) {
                break;
            }
            if (i % 16 == 15) {
                sleep_ms(1);
            }
        }
    }
    STORE(&j->done, 1);
    return NULL;
}

void test_log_args(edgebuf_t *h) {
    static const char ok_rec[] = "{\"k\":1}";
    CHECK_RC(edgebuf_log(NULL, ok_rec, strlen(ok_rec)), EDGEBUF_ERR_INVALID_ARGUMENT);
    CHECK_RC(edgebuf_log(h, NULL, 5), EDGEBUF_ERR_INVALID_ARGUMENT);
    CHECK_RC(edgebuf_log(h, NULL, 0), EDGEBUF_ERR_INVALID_ARGUMENT);
    CHECK_RC(edgebuf_log(h, ok_rec, 0), EDGEBUF_ERR_INVALID_RECORD); /* zero length */
    CHECK_RC(log_str(h, "   "), EDGEBUF_ERR_INVALID_RECORD);
    CHECK_RC(log_str(h, "{"), EDGEBUF_ERR_INVALID_RECORD);
    CHECK_RC(log_str(h, "1 2"), EDGEBUF_ERR_INVALID_RECORD);
    CHECK_RC(log_str(h, "{}x"), EDGEBUF_ERR_INVALID_RECORD);
    CHECK_RC(log_str(h, "{'a':1}"), EDGEBUF_ERR_INVALID_RECORD);
    CHECK_RC(log_exact(h, "{}\0", 3), EDGEBUF_ERR_INVALID_RECORD);      /* NUL after */
    CHECK_RC(log_exact(h, "\"a\0b\"", 5), EDGEBUF_ERR_INVALID_RECORD);  /* raw NUL inside */
    CHECK_RC(log_str(h, "\"\xff\""), EDGEBUF_ERR_INVALID_RECORD);       /* invalid UTF-8 */
    CHECK(last_error_has("UTF-8"));
    CHECK_RC(log_str(h, "\"\xc0\xaf\""), EDGEBUF_ERR_INVALID_RECORD);   /* overlong */
    CHECK_RC(log_str(h, "\"\xed\xa0\x80\""), EDGEBUF_ERR_INVALID_RECORD); /* surrogate */
    CHECK_RC(log_str(h, "\"caf\xc3\xa9\""), EDGEBUF_OK);               /* valid UTF-8 */
    CHECK_RC(log_str(h, " \t{\"ws\":true}\r\n"), EDGEBUF_OK);          /* whitespace around */
    CHECK_RC(log_str(h, "null"), EDGEBUF_OK);

    /* Nesting: 128 is fine, 129 is INVALID_RECORD. */
    for (int objects = 0; objects <= 1; objects++) {
        size_t n = 0;
        char *s = nested(128, objects, &n);
        CHECK_RC(log_exact(h, s, n), EDGEBUF_OK);
        free(s);
        s = nested(129, objects, &n);
        CHECK_RC(log_exact(h, s, n), EDGEBUF_ERR_INVALID_RECORD);
        CHECK(last_error_has("128"));
        free(s);
    }
    size_t n = 0;
    char *deep = nested(100000, 0, &n);
    CHECK_RC(log_exact(h, deep, n), EDGEBUF_ERR_INVALID_RECORD); /* too long, too deep */
    free(deep);

    /* record.max_bytes (4096, from the environment): exactly is OK, one more is not. */
    const size_t max = 4096;
    char *rec = (char *)malloc(max + 1);
    if (rec == NULL) {
        DIE("malloc");
    }
    rec[0] = '"';
    memset(rec + 1, 'm', max - 2);
    rec[max - 1] = '"';
    CHECK_RC(log_exact(h, rec, max), EDGEBUF_OK);
    rec[max - 1] = 'm';
    rec[max] = '"';
    CHECK_RC(log_exact(h, rec, max + 1), EDGEBUF_ERR_INVALID_RECORD);
    CHECK(last_error_has("record.max_bytes"));
    free(rec);

    /* Huge lengths are refused before any byte is read (ASan/valgrind watch `small`). */
    char *small = (char *)malloc(2);
    if (small == NULL) {
        DIE("malloc");
    }
    memcpy(small, "{}", 2);
    CHECK_RC(edgebuf_log(h, small, SIZE_MAX), EDGEBUF_ERR_INVALID_RECORD);
    CHECK_RC(edgebuf_log(h, small, SIZE_MAX / 2 + 1), EDGEBUF_ERR_INVALID_RECORD);
    CHECK_RC(edgebuf_log(h, small, max + 1), EDGEBUF_ERR_INVALID_RECORD);
    CHECK_RC(edgebuf_log(h, small, 2), EDGEBUF_OK);
    ADD(&g_logged_ok, 1);
    free(small);

    /* sync, flush, retry_now arguments */
    CHECK_RC(edgebuf_sync(NULL, 0), EDGEBUF_ERR_INVALID_ARGUMENT);
    CHECK_RC(edgebuf_flush(NULL, 0), EDGEBUF_ERR_INVALID_ARGUMENT);
    CHECK_RC(edgebuf_retry_now(NULL), EDGEBUF_ERR_INVALID_ARGUMENT);
    CHECK_RC(edgebuf_close(NULL, 0), EDGEBUF_ERR_INVALID_ARGUMENT);
}

/* Four threads log at once while this one checks the invariant. */
void test_log_threads(edgebuf_t *h, int per_thread) {
    enum { NT = 4 };
    log_job jobs[NT];
    pthread_t th[NT];
    for (int i = 0; i < NT; i++) {
        memset(&jobs[i], 0, sizeof jobs[i]);
        jobs[i].h = h;
        jobs[i].id = i;
        jobs[i].n = per_thread;
        if (pthread_create(&th[i], NULL, log_worker, &jobs[i]) != 0) {
            DIE("pthread_create");
        }
    }
    int all_done = 0, bad_invariant = 0, polls = 0;
    while (!all_done) {
        edgebuf_status_t st = EDGEBUF_STATUS_INIT;
        if (edgebuf_status(h, &st) != EDGEBUF_OK || !invariant_holds(&st)) {
            bad_invariant++;
        }
        polls++;
        all_done = 1;
        for (int i = 0; i < NT; i++) {
            all_done &= LOAD(&jobs[i].done);
        }
        if (!all_done) {
            sleep_ms(1);
        }
    }
    CHECK(bad_invariant == 0);
    CHECK(polls > 0);
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        CHECK(jobs[i].ok == (uint64_t)per_thread);
        CHECK(jobs[i].other == 0);
    }
}
