/* The event callback: it runs on the library's event thread and calls back into its own
   handle (close, flush and sync must refuse; status, status_json, log and retry_now work),
   checks that status already counts what a DELIVERED event reports, and can be held inside an
   event so that lifecycle.c can test close waiting for a running callback. */
#include "check.h"

#include <string.h>
#include <time.h>

void on_event(const edgebuf_event_t *ev, void *user_data) {
    cb_ctx *c = (cb_ctx *)user_data;
    ADD(&c->running, 1);
    ADD(&c->events, 1);
    if (ev == NULL || ev->struct_size < sizeof(edgebuf_event_t) || ev->message == NULL ||
        ev->kind < EDGEBUF_EVENT_ONLINE || ev->kind > EDGEBUF_EVENT_STORAGE_OK) {
        ADD(&c->bad_event, 1);
    } else {
        volatile size_t ml = strlen(ev->message); /* must be readable during the call */
        (void)ml;
        if (ev->kind == EDGEBUF_EVENT_DELIVERED) {
            ADD(&c->delivered, ev->count);
        }
    }
    edgebuf_t *h = LOAD(&c->h);
    if (h != NULL && ev != NULL) {
        /* close, flush and sync on its own handle: INVALID_ARGUMENT (CLOSED also fits flush and
           sync while main is closing the handle). close must never free or deadlock. */
        if (edgebuf_close(h, 0) != EDGEBUF_ERR_INVALID_ARGUMENT) {
            ADD(&c->bad_close, 1);
        }
        edgebuf_result rf = edgebuf_flush(h, 10);
        edgebuf_result rs = edgebuf_sync(h, 10);
        int closing = LOAD(&c->main_closing); /* read after: CLOSED implies it is set */
        if (!(rf == EDGEBUF_ERR_INVALID_ARGUMENT || (closing && rf == EDGEBUF_ERR_CLOSED)) ||
            !(rs == EDGEBUF_ERR_INVALID_ARGUMENT || (closing && rs == EDGEBUF_ERR_CLOSED))) {
            ADD(&c->bad_flush_sync, 1);
        }
        if (!closing && ev->kind == EDGEBUF_EVENT_DELIVERED) {
            /* Status is updated before the event about it fires. */
            edgebuf_status_t st = EDGEBUF_STATUS_INIT;
            if (edgebuf_status(h, &st) == EDGEBUF_OK && st.delivered_total < LOAD(&c->delivered)) {
                ADD(&c->status_behind, 1);
            }
        }
        if (!closing && !LOAD(&c->own_done) && ev->kind == EDGEBUF_EVENT_DELIVERED) {
            edgebuf_status_t st = EDGEBUF_STATUS_INIT;
            size_t need = 0;
            c->own_status = edgebuf_status(h, &st);
            c->own_json = edgebuf_status_json(h, NULL, 0, &need);
            c->own_log = log_str(h, "{\"from\":\"callback\"}");
            c->own_retry = edgebuf_retry_now(h);
            STORE(&c->own_done, 1);
        }
    }
    if (__atomic_exchange_n(&c->block_next, 0, __ATOMIC_SEQ_CST)) {
        uint64_t deadline = now_ms() + 60000;
        pthread_mutex_lock(&c->mu);
        STORE(&c->blocked, 1);
        pthread_cond_broadcast(&c->cv);
        while (!LOAD(&c->release)) {
            if (now_ms() > deadline) {
                STORE(&c->block_timed_out, 1);
                break;
            }
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&c->cv, &c->mu, &ts);
        }
        pthread_mutex_unlock(&c->mu);
    }
    ADD(&c->running, -1);
}

/* What the callback did on its own handle (on_event, from the first DELIVERED event). */
void test_callback_calls(cb_ctx *ctx) {
    CHECK(LOAD(&ctx->own_done) == 1);
    CHECK_RC(ctx->own_status, EDGEBUF_OK);
    CHECK_RC(ctx->own_json, EDGEBUF_ERR_BUFFER_TOO_SMALL);
    CHECK_RC(ctx->own_log, EDGEBUF_OK);
    CHECK_RC(ctx->own_retry, EDGEBUF_OK);
    CHECK(LOAD(&ctx->bad_close) == 0);
    CHECK(LOAD(&ctx->bad_flush_sync) == 0);
    CHECK(LOAD(&ctx->bad_event) == 0);
    CHECK(LOAD(&ctx->status_behind) == 0);
}
