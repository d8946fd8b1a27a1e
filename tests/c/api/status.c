/* Status: edgebuf_status's struct_size rules (too small, a newer caller's larger struct) and
   edgebuf_status_json's buffer rules (the size asked for, too small, every key). */
#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void test_status_args(edgebuf_t *h) {
    edgebuf_status_t st = EDGEBUF_STATUS_INIT;
    CHECK(st.struct_size == sizeof(edgebuf_status_t));
    CHECK_RC(edgebuf_status(NULL, &st), EDGEBUF_ERR_INVALID_ARGUMENT);
    CHECK_RC(edgebuf_status(h, NULL), EDGEBUF_ERR_INVALID_ARGUMENT);
    CHECK_RC(edgebuf_status(h, &st), EDGEBUF_OK);
    CHECK(st.struct_size == EDGEBUF_STATUS_SIZE_V2);
    CHECK(invariant_holds(&st));
    CHECK(st.budget_left_bytes == UINT64_MAX);

    /* A caller built against the first release's header: only its 128 bytes are written. */
    edgebuf_status_t old;
    memset(&old, 0x5a, sizeof old);
    old.struct_size = EDGEBUF_STATUS_SIZE_V1;
    CHECK_RC(edgebuf_status(h, &old), EDGEBUF_OK);
    CHECK(old.struct_size == EDGEBUF_STATUS_SIZE_V1);
    CHECK(invariant_holds(&old));
    CHECK(old.rejected_total == UINT64_C(0x5a5a5a5a5a5a5a5a));
    CHECK(old.budget_left_bytes == UINT64_C(0x5a5a5a5a5a5a5a5a));

    /* Too small: INVALID_ARGUMENT, the struct untouched. */
    edgebuf_status_t small, before;
    memset(&small, 0x5a, sizeof small);
    small.struct_size = EDGEBUF_STATUS_SIZE_V1 - 1;
    memcpy(&before, &small, sizeof small);
    CHECK_RC(edgebuf_status(h, &small), EDGEBUF_ERR_INVALID_ARGUMENT);
    CHECK(memcmp(&small, &before, sizeof small) == 0);
    small.struct_size = 0;
    CHECK_RC(edgebuf_status(h, &small), EDGEBUF_ERR_INVALID_ARGUMENT);

    /* A newer caller's larger struct: the library writes only what it knows. */
    typedef struct status_plus {
        edgebuf_status_t st;
        uint64_t future_field;
    } status_plus;
    status_plus sp;
    memset(&sp, 0xab, sizeof sp);
    sp.st.struct_size = (uint32_t)sizeof sp;
    CHECK_RC(edgebuf_status(h, &sp.st), EDGEBUF_OK);
    CHECK(sp.st.struct_size == EDGEBUF_STATUS_SIZE_V2);
    CHECK(sp.future_field == UINT64_C(0xabababababababab));
    CHECK(invariant_holds(&sp.st));

    /* status_json arguments */
    size_t len = 12345;
    char buf[16];
    CHECK_RC(edgebuf_status_json(NULL, buf, sizeof buf, &len), EDGEBUF_ERR_INVALID_ARGUMENT);
    CHECK_RC(edgebuf_status_json(h, buf, sizeof buf, NULL), EDGEBUF_ERR_INVALID_ARGUMENT);
    CHECK_RC(edgebuf_status_json(h, NULL, 5, &len), EDGEBUF_ERR_INVALID_ARGUMENT);
    CHECK_RC(edgebuf_status_json(h, NULL, 0, NULL), EDGEBUF_ERR_INVALID_ARGUMENT);
}

void test_status_json(edgebuf_t *h) {
    size_t need = 0;
    CHECK_RC(edgebuf_status_json(h, NULL, 0, &need), EDGEBUF_ERR_BUFFER_TOO_SMALL);
    CHECK(need > 2 && need < 4096);

    /* Too small: TOO_SMALL with the size, the buffer untouched. */
    char tiny[8];
    memset(tiny, 'X', sizeof tiny);
    size_t len = 0;
    CHECK_RC(edgebuf_status_json(h, tiny, sizeof tiny, &len), EDGEBUF_ERR_BUFFER_TOO_SMALL);
    CHECK(len > sizeof tiny);
    int untouched = 1;
    for (size_t i = 0; i < sizeof tiny; i++) {
        untouched &= tiny[i] == 'X';
    }
    CHECK(untouched);
    memset(tiny, 'X', sizeof tiny);
    CHECK_RC(edgebuf_status_json(h, tiny, 1, &len), EDGEBUF_ERR_BUFFER_TOO_SMALL);
    CHECK(tiny[0] == 'X');

    /* OK: exactly the size asked for (the size may grow between calls: retry a few times). */
    edgebuf_result rc = EDGEBUF_ERR_BUFFER_TOO_SMALL;
    char *buf = NULL;
    size_t cap = 0;
    for (int attempt = 0; attempt < 5 && rc == EDGEBUF_ERR_BUFFER_TOO_SMALL; attempt++) {
        CHECK_RC(edgebuf_status_json(h, NULL, 0, &need), EDGEBUF_ERR_BUFFER_TOO_SMALL);
        free(buf);
        cap = need;
        buf = (char *)malloc(cap);
        if (buf == NULL) {
            DIE("malloc");
        }
        rc = edgebuf_status_json(h, buf, cap, &len);
    }
    CHECK_RC(rc, EDGEBUF_OK);
    if (rc == EDGEBUF_OK) {
        CHECK(len < cap && buf[len] == '\0' && strlen(buf) == len);
        CHECK(buf[0] == '{' && buf[len - 1] == '}');
        static const char *const keys[] = {
            "\"pending_records\":",   "\"pending_bytes\":",        "\"disk_bytes\":",
            "\"logged_total\":",      "\"delivered_total\":",      "\"dropped_total\":",
            "\"dead_letter_records\":", "\"failed_attempts_total\":", "\"consecutive_failures\":",
            "\"next_retry_in_ms\":",  "\"oldest_pending_age_ms\":", "\"last_success_unix_ms\":",
            "\"last_http_status\":",  "\"connectivity\":\"",        "\"storage_degraded\":",
            "\"pending_at_open\":",   "\"dead_lettered_total\":",    "\"rejected_total\":",
            "\"sent_bytes_total\":",  "\"budget_left_bytes\":",
        };
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
            if (strstr(buf, keys[i]) == NULL) {
                fprintf(stderr, "status_json lacks %s: %s\n", keys[i], buf);
                CHECK(strstr(buf, keys[i]) != NULL);
            }
        }
        CHECK(strstr(buf, "\"pending_records\":0,") != NULL);
        CHECK(strstr(buf, "\"connectivity\":\"online\"") != NULL);
        CHECK(strstr(buf, "\"storage_degraded\":false") != NULL);
        CHECK(strstr(buf, "zq-secret") == NULL);
    }
    free(buf);
    /* A roomy buffer also works; len is without the NUL. */
    char big[4096];
    CHECK_RC(edgebuf_status_json(h, big, sizeof big, &len), EDGEBUF_OK);
    CHECK(strlen(big) == len);
}
