/* Delivery: every record logged so far (by any area, and the callback's own) reaches the
   receiver; then the status counters agree with it and the DELIVERED events add up. */
#include "check.h"

#include <inttypes.h>
#include <stdio.h>

void test_all_delivered(edgebuf_t *h, cb_ctx *ctx, uint64_t logged_before_open) {
    /* The callback logs one record from the first DELIVERED event: wait for it, then flush. */
    {
        uint64_t deadline = now_ms() + 30000;
        while (!LOAD(&ctx->own_done) && now_ms() < deadline) {
            sleep_ms(5);
        }
        CHECK(LOAD(&ctx->own_done) == 1);
    }
    CHECK_RC(edgebuf_flush(h, 30000), EDGEBUF_OK);
    CHECK_RC(edgebuf_sync(h, 10000), EDGEBUF_OK);
    CHECK_RC(edgebuf_retry_now(h), EDGEBUF_OK);
    CHECK_RC(edgebuf_flush(h, 0), EDGEBUF_OK); /* nothing pending: 0 only checks */
    CHECK(LOAD(&g_rx.envelopes) == LOAD(&g_logged_ok));
    if (LOAD(&g_rx.envelopes) != LOAD(&g_logged_ok)) {
        fprintf(stderr, "receiver saw %" PRIu64 " envelopes, %" PRIu64 " were logged\n",
                LOAD(&g_rx.envelopes), LOAD(&g_logged_ok));
    }
    {
        edgebuf_status_t st = EDGEBUF_STATUS_INIT;
        CHECK_RC(edgebuf_status(h, &st), EDGEBUF_OK);
        CHECK(invariant_holds(&st));
        CHECK(st.pending_records == 0 && st.pending_bytes == 0);
        CHECK(st.logged_total == LOAD(&g_logged_ok) - logged_before_open);
        CHECK(st.delivered_total == st.logged_total + st.pending_at_open);
        CHECK(st.dropped_total == 0 && st.dead_lettered_total == 0);
        CHECK(st.dead_letter_records == 0);
        CHECK(st.connectivity == EDGEBUF_CONNECTIVITY_ONLINE);
        CHECK(st.last_http_status == 200);
        CHECK(st.last_success_unix_ms > 0);
        CHECK(st.consecutive_failures == 0);
        /* The receiver closes idle keep-alive connections: the resend on a new connection
           is not a failed attempt (docs/reference.md, the wire). */
        CHECK(st.failed_attempts_total == 0);
        CHECK(st.storage_degraded == 0);
        CHECK(st.oldest_pending_age_ms == 0);
        CHECK(st.disk_bytes > 0);
        /* Every DELIVERED event arrives (they coalesce, the counts add up). */
        CHECK(wait_until(&ctx->delivered, st.delivered_total, 10000));
        CHECK(LOAD(&ctx->delivered) == st.delivered_total);
    }
}
