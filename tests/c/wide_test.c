/*
 * 64-bit values on every target, 32-bit ones above all (armv7: 32-bit size_t, long and
 * pointers): key values above 2^32 (capacity.max_bytes up to 2^63 - 1), the status struct's 64-bit
 * fields, wall-clock milliseconds (above 2^32 since 1970-02-19). Run by tests/targets/wide.sh,
 * which also moves the file's seq high-water mark past 2^32 between two runs and checks on the
 * receiver's side that seq, id and ts_ms arrive intact.
 *
 *   wide_test PATH ENDPOINT COUNT
 *       Checks the configuration and struct layout, opens PATH with key values above 2^32
 *       (capacity.max_bytes at 2^63 - 1 when WIDE_MAX_CAPACITY is set),
 *       logs COUNT records (one of them ~70 KB), flushes, checks status, closes. Prints
 *       "wide_test: N checks, 0 failed" and exits 0 when every check passed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "edgebuf.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int g_checks, g_failures;

static void check_(int ok, const char *expr, int line) {
    g_checks++;
    if (!ok) {
        g_failures++;
        fprintf(stderr, "wide_test.c:%d: CHECK failed: %s (edgebuf_last_error: \"%s\")\n", line,
                expr, edgebuf_last_error());
    }
}
#define CHECK(cond) check_((cond) ? 1 : 0, #cond, __LINE__)
#define CHECK_RC(call, want) check_((call) == (want), #call " == " #want, __LINE__)

static int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Keys whose range passes 2^32 take such values on every target, up to their maximum. */
static void check_keys(void) {
    static const struct {
        const char *key, *max, *over;
    } keys[] = {
        {"capacity.max_bytes", "9223372036854775807", "9223372036854775808"},
        {"capacity.max_records", "9223372036854775807", "9223372036854775808"},
        {"disk.min_free_bytes", "9223372036854775807", "9223372036854775808"},
        {"dead_letter.max_records", "9223372036854775807", "9223372036854775808"},
        {"alert.pending_records", "9223372036854775807", "9223372036854775808"},
        {"memory.max_bytes", "17179869184", "17179869185"},
        {"record.ttl_ms", "315360000000", "315360000001"},
    };
    edgebuf_config_t *cfg = edgebuf_config_new();
    CHECK(cfg != NULL);
    if (!cfg) return;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        CHECK_RC(edgebuf_config_set(cfg, keys[i].key, "4294967296"), EDGEBUF_OK);
        CHECK_RC(edgebuf_config_set(cfg, keys[i].key, "4294967297"), EDGEBUF_OK);
        CHECK_RC(edgebuf_config_set(cfg, keys[i].key, keys[i].max), EDGEBUF_OK);
        CHECK_RC(edgebuf_config_set(cfg, keys[i].key, keys[i].over), EDGEBUF_ERR_INVALID_CONFIG);
        CHECK(strstr(edgebuf_last_error(), keys[i].key) != NULL);
        CHECK_RC(edgebuf_config_set(cfg, keys[i].key, "18446744073709551616"), EDGEBUF_ERR_INVALID_CONFIG);
    }
    edgebuf_config_free(cfg);
}

/* The layout every target shares with the header: 64-bit fields 8-aligned, V1 at 128 bytes. */
static void check_layout(void) {
    CHECK(sizeof(uint64_t) == 8 && sizeof(int64_t) == 8);
    CHECK(offsetof(edgebuf_status_t, pending_records) == 8);
    CHECK(offsetof(edgebuf_status_t, oldest_pending_age_ms) % 8 == 0);
    CHECK(offsetof(edgebuf_status_t, last_success_unix_ms) % 8 == 0);
    CHECK(offsetof(edgebuf_status_t, dead_lettered_total) + 8 == EDGEBUF_STATUS_SIZE_V1);
    CHECK(offsetof(edgebuf_status_t, budget_left_bytes) + 8 == EDGEBUF_STATUS_SIZE_V2);
    CHECK(sizeof(edgebuf_status_t) >= EDGEBUF_STATUS_SIZE_V1);
    CHECK(offsetof(edgebuf_event_t, count) % 8 == 0);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s PATH ENDPOINT COUNT\n", argv[0]);
        return 2;
    }
    long count = atol(argv[3]);
    check_keys();
    check_layout();

    edgebuf_config_t *cfg = edgebuf_config_new();
    if (!cfg) return 1;
    CHECK_RC(edgebuf_config_set(cfg, "path", argv[1]), EDGEBUF_OK);
    CHECK_RC(edgebuf_config_set(cfg, "endpoint", argv[2]), EDGEBUF_OK);
    CHECK_RC(edgebuf_config_set(cfg, "source.id", "wide-test"), EDGEBUF_OK);
    /* Above 2^32; cut to 32 bits, these would be 4096 bytes, 5 records and 1024 bytes: records
     * would be dropped or refused. The capacity is also checked at its maximum, 2^63 - 1. */
    CHECK_RC(edgebuf_config_set(cfg, "capacity.max_bytes", "4294971392"), EDGEBUF_OK);
    CHECK_RC(edgebuf_config_set(cfg, "capacity.max_records", "4294967301"), EDGEBUF_OK);
    CHECK_RC(edgebuf_config_set(cfg, "memory.max_bytes", "4294968320"), EDGEBUF_OK);
    CHECK_RC(edgebuf_config_set(cfg, "record.ttl_ms", "4294967297"), EDGEBUF_OK);
    if (getenv("WIDE_MAX_CAPACITY"))
        CHECK_RC(edgebuf_config_set(cfg, "capacity.max_bytes", "9223372036854775807"), EDGEBUF_OK);
    CHECK_RC(edgebuf_config_set(cfg, "batch.linger_ms", "20"), EDGEBUF_OK);
    CHECK_RC(edgebuf_config_set(cfg, "commit.interval_ms", "50"), EDGEBUF_OK);
    edgebuf_t *eb = NULL;
    edgebuf_result r = edgebuf_open(cfg, &eb);
    edgebuf_config_free(cfg);
    CHECK_RC(r, EDGEBUF_OK);
    if (r != EDGEBUF_OK) {
        printf("wide_test: open failed: %s\n", edgebuf_last_error());
        return 1;
    }

    edgebuf_status_t st0 = EDGEBUF_STATUS_INIT;
    CHECK_RC(edgebuf_status(eb, &st0), EDGEBUF_OK);

    int64_t before = wall_ms();
    static char big[70 * 1024];
    for (long i = 0; i < count; i++) {
        char rec[128];
        const char *p = rec;
        int len;
        if (i == count / 2) {
            /* {"i":N,"pad":"xxxx...."} of about 70 KB */
            len = snprintf(big, sizeof big, "{\"i\":%ld,\"pad\":\"", i);
            while (len < (int)sizeof big - 3) big[len++] = 'x';
            big[len++] = '"';
            big[len++] = '}';
            p = big;
        } else {
            len = snprintf(rec, sizeof rec, "{\"i\":%ld,\"t\":%lld}", i, (long long)wall_ms());
        }
        CHECK_RC(edgebuf_log(eb, p, (size_t)len), EDGEBUF_OK);
    }
    CHECK_RC(edgebuf_flush(eb, 30000), EDGEBUF_OK);
    int64_t after = wall_ms();

    edgebuf_status_t st = EDGEBUF_STATUS_INIT;
    CHECK_RC(edgebuf_status(eb, &st), EDGEBUF_OK);
    CHECK(st.struct_size >= EDGEBUF_STATUS_SIZE_V1);
    CHECK(st.logged_total == (uint64_t)count);
    CHECK(st.delivered_total == (uint64_t)count + st0.pending_at_open);
    CHECK(st.pending_records == 0);
    CHECK(st.pending_bytes == 0);
    CHECK(st.dropped_total == 0);
    CHECK(st.failed_attempts_total == 0);
    CHECK(st.disk_bytes > 0);
    /* A wall-clock millisecond count (> 2^40 today) survives as a signed 64-bit value. */
    CHECK(st.last_success_unix_ms >= before && st.last_success_unix_ms <= after);
    CHECK(st.last_success_unix_ms > ((int64_t)1 << 40));

    char json[2048];
    size_t jlen = 0;
    CHECK_RC(edgebuf_status_json(eb, json, sizeof json, &jlen), EDGEBUF_OK);
    char want[64];
    snprintf(want, sizeof want, "\"last_success_unix_ms\":%lld", (long long)st.last_success_unix_ms);
    CHECK(strstr(json, want) != NULL);
    snprintf(want, sizeof want, "\"logged_total\":%ld", count);
    CHECK(strstr(json, want) != NULL);
    CHECK_RC(edgebuf_close(eb, 5000), EDGEBUF_OK);

    printf("wide_test: %d checks, %d failed (logged %ld, window %lld..%lld)\n", g_checks,
           g_failures, count, (long long)before, (long long)after);
    return g_failures ? 1 : 0;
}
