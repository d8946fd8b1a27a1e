/* Lifecycle: an unreachable endpoint (close leaves the records on disk), one file one owner
   (a second open, under any spelling of the path, is LOCKED), close while threads log (every
   overlapping call is CLOSED, close waits for a running callback, none runs after it), and a
   reopen once the lock is released. */
#include "check.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

typedef struct closer_job {
    edgebuf_t *h;
    uint32_t timeout_ms;
    edgebuf_result rc;
    char msg[512];
} closer_job;

static void *closer_main(void *arg) {
    closer_job *j = (closer_job *)arg;
    j->rc = edgebuf_close(j->h, j->timeout_ms);
    snprintf(j->msg, sizeof j->msg, "%s", edgebuf_last_error());
    return NULL;
}

/* Records stay on disk for the next open when the endpoint is unreachable. */
void test_unreachable_endpoint(const char *path, const char *dead_endpoint) {
    edgebuf_config_t *cfg = env_config(path, dead_endpoint);
    edgebuf_t *h = NULL;
    CHECK_RC(edgebuf_open(cfg, &h), EDGEBUF_OK);
    edgebuf_config_free(cfg);
    if (h == NULL) {
        DIE("open (phase 1)");
    }
    for (int i = 0; i < 3; i++) {
        CHECK_RC(log_str(h, "{\"phase\":1}"), EDGEBUF_OK);
    }
    CHECK_RC(edgebuf_sync(h, 10000), EDGEBUF_OK);
    CHECK_RC(edgebuf_flush(h, 0), EDGEBUF_ERR_TIMEOUT); /* 0 only checks */
    edgebuf_status_t st = EDGEBUF_STATUS_INIT;
    CHECK_RC(edgebuf_status(h, &st), EDGEBUF_OK);
    CHECK(st.pending_records == 3 && st.logged_total == 3 && st.pending_at_open == 0);
    CHECK(invariant_holds(&st));
    CHECK_RC(edgebuf_close(h, 0), EDGEBUF_ERR_TIMEOUT); /* nothing lost: stays on disk */
    CHECK(last_error_has("3"));
}

/* One file, one owner: a second open (any spelling) is LOCKED and names the path. */
void test_second_open_is_locked(edgebuf_config_t *cfg, const char *path, const char *alias,
                                const char *endpoint) {
    edgebuf_t *h2 = (edgebuf_t *)&h2;
    CHECK_RC(edgebuf_open(cfg, &h2), EDGEBUF_ERR_LOCKED);
    CHECK(h2 == NULL);
    CHECK(last_error_has(path));
    edgebuf_config_t *cfg2 = edgebuf_config_new();
    CHECK_RC(edgebuf_config_set(cfg2, "path", alias), EDGEBUF_OK);
    CHECK_RC(edgebuf_config_set(cfg2, "endpoint", endpoint), EDGEBUF_OK);
    h2 = (edgebuf_t *)&h2;
    CHECK_RC(edgebuf_open(cfg2, &h2), EDGEBUF_ERR_LOCKED);
    CHECK(h2 == NULL);
    CHECK(last_error_has(path));
    CHECK(!last_error_has("zq-secret"));
    edgebuf_config_free(cfg2);
}

void test_close_while_logging(edgebuf_t *h, cb_ctx *ctx) {
    /* ---- close while three threads log in a loop ----
       A call made after close has returned is undefined behaviour, so the loggers must be
       done before close can return: the callback is held inside an event (close waits for a
       running callback), the loggers call edgebuf_log until it says CLOSED, they are joined,
       and only then is the callback released and close allowed to finish. */
    STORE(&ctx->block_next, 1);
    CHECK_RC(log_str(h, "{\"before\":\"close\"}"), EDGEBUF_OK);
    CHECK_RC(edgebuf_flush(h, 30000), EDGEBUF_OK);
    int blocked = 0;
    {
        uint64_t deadline = now_ms() + 30000;
        pthread_mutex_lock(&ctx->mu);
        while (!LOAD(&ctx->blocked) && now_ms() < deadline) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&ctx->cv, &ctx->mu, &ts);
        }
        blocked = LOAD(&ctx->blocked);
        pthread_mutex_unlock(&ctx->mu);
    }
    CHECK(blocked);
    if (!blocked) {
        DIE("the event callback never ran; cannot test close safely");
    }
    enum { NL = 3 };
    log_job loggers[NL];
    pthread_t lt[NL];
    for (int i = 0; i < NL; i++) {
        memset(&loggers[i], 0, sizeof loggers[i]);
        loggers[i].h = h;
        loggers[i].id = 10 + i;
        loggers[i].n = 0;
        loggers[i].deadline = now_ms() + 60000;
        if (pthread_create(&lt[i], NULL, log_worker, &loggers[i]) != 0) {
            DIE("pthread_create");
        }
    }
    for (int i = 0; i < NL; i++) {
        CHECK(wait_until(&loggers[i].ok, 5, 20000)); /* each is logging in its loop */
    }
    STORE(&ctx->main_closing, 1);
    closer_job cj;
    memset(&cj, 0, sizeof cj);
    cj.h = h;
    cj.timeout_ms = 20000;
    pthread_t ct;
    if (pthread_create(&ct, NULL, closer_main, &cj) != 0) {
        DIE("pthread_create");
    }
    for (int i = 0; i < NL; i++) {
        pthread_join(lt[i], NULL);
        CHECK(loggers[i].closed == 1); /* stopped by CLOSED, not by its deadline */
        CHECK(loggers[i].other == 0);
        if (loggers[i].other != 0) {
            fprintf(stderr, "logger %d got %s\n", i, edgebuf_result_name(loggers[i].last_other));
        }
    }
    /* close is still running (it waits for the callback): every call overlapping it is
       CLOSED, including a second close. */
    {
        edgebuf_status_t st = EDGEBUF_STATUS_INIT;
        size_t len = 0;
        CHECK_RC(log_str(h, "{\"during\":\"close\"}"), EDGEBUF_ERR_CLOSED);
        CHECK_RC(edgebuf_status(h, &st), EDGEBUF_ERR_CLOSED);
        CHECK_RC(edgebuf_status_json(h, NULL, 0, &len), EDGEBUF_ERR_CLOSED);
        CHECK_RC(edgebuf_flush(h, 100), EDGEBUF_ERR_CLOSED);
        CHECK_RC(edgebuf_sync(h, 100), EDGEBUF_ERR_CLOSED);
        CHECK_RC(edgebuf_retry_now(h), EDGEBUF_ERR_CLOSED);
        CHECK_RC(edgebuf_close(h, 0), EDGEBUF_ERR_CLOSED);
    }
    pthread_mutex_lock(&ctx->mu);
    STORE(&ctx->release, 1);
    pthread_cond_broadcast(&ctx->cv);
    pthread_mutex_unlock(&ctx->mu);
    {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 60;
        if (pthread_timedjoin_np(ct, NULL, &ts) != 0) {
            DIE("edgebuf_close did not return within 60 s (deadlock?)");
        }
    }
    CHECK(!LOAD(&ctx->block_timed_out));
    CHECK_RC(cj.rc, EDGEBUF_OK);
    if (cj.rc != EDGEBUF_OK) {
        fprintf(stderr, "close said: %s\n", cj.msg);
    }
    STORE(&ctx->h, (edgebuf_t *)NULL);
    /* After close returned no callback runs. */
    {
        uint64_t events = LOAD(&ctx->events);
        CHECK(LOAD(&ctx->running) == 0);
        sleep_ms(100);
        CHECK(LOAD(&ctx->events) == events);
        CHECK(LOAD(&ctx->bad_close) == 0);
        CHECK(LOAD(&ctx->bad_flush_sync) == 0);
        CHECK(LOAD(&ctx->bad_event) == 0);
    }
}

/* The lock is released: reopen under another spelling, nothing pending; every record arrived. */
void test_reopen(const char *alias, const char *endpoint) {
    edgebuf_config_t *c3 = edgebuf_config_new();
    CHECK_RC(edgebuf_config_set(c3, "path", alias), EDGEBUF_OK); /* another spelling */
    CHECK_RC(edgebuf_config_set(c3, "endpoint", endpoint), EDGEBUF_OK);
    CHECK_RC(edgebuf_config_set(c3, "http.proxy", "none"), EDGEBUF_OK);
    CHECK_RC(edgebuf_config_set(c3, "batch.linger_ms", "5"), EDGEBUF_OK);
    edgebuf_t *h3 = NULL;
    CHECK_RC(edgebuf_open(c3, &h3), EDGEBUF_OK);
    edgebuf_config_free(c3);
    if (h3 != NULL) {
        edgebuf_status_t st = EDGEBUF_STATUS_INIT;
        CHECK_RC(edgebuf_status(h3, &st), EDGEBUF_OK);
        CHECK(st.pending_at_open == 0);
        CHECK(invariant_holds(&st));
        CHECK_RC(edgebuf_flush(h3, 30000), EDGEBUF_OK);
        CHECK_RC(edgebuf_close(h3, 5000), EDGEBUF_OK);
    }
    CHECK(LOAD(&g_rx.envelopes) == LOAD(&g_logged_ok));
    CHECK(LOAD(&g_rx.duplicates) == 0);
    CHECK(LOAD(&g_rx.bad) == 0);
    CHECK(LOAD(&g_rx.requests) > 0);
    CHECK_RC(edgebuf_close(NULL, 0), EDGEBUF_ERR_INVALID_ARGUMENT);
}
