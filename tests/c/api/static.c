/* The functions that need no handle: version, result names and codes, the status struct's
   size, and edgebuf_last_error per thread. */
#include "check.h"

#include <stdio.h>
#include <string.h>

typedef struct fresh_job {
    int empty_at_start;
    int not_null;
    int set_after_failure;
    int kept_after_success;
} fresh_job;

static void *fresh_thread(void *arg) {
    fresh_job *j = (fresh_job *)arg;
    const char *e = edgebuf_last_error();
    j->not_null = e != NULL;
    j->empty_at_start = e != NULL && e[0] == '\0';
    edgebuf_result rc = edgebuf_flush(NULL, 0);
    e = edgebuf_last_error();
    j->set_after_failure = rc == EDGEBUF_ERR_INVALID_ARGUMENT && e != NULL && e[0] != '\0';
    char copy[512];
    snprintf(copy, sizeof copy, "%s", e != NULL ? e : "");
    /* success leaves the message as it was */
    edgebuf_config_t *cfg = edgebuf_config_new();
    rc = edgebuf_config_set(cfg, "batch.linger_ms", "10");
    edgebuf_config_free(cfg);
    e = edgebuf_last_error();
    j->kept_after_success = rc == EDGEBUF_OK && e != NULL && strcmp(e, copy) == 0;
    return NULL;
}

void test_static_functions(void) {
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", EDGEBUF_VERSION_MAJOR, EDGEBUF_VERSION_MINOR,
             EDGEBUF_VERSION_PATCH);
    CHECK(edgebuf_version() != NULL);
    CHECK(strcmp(edgebuf_version(), want) == 0);
    CHECK(edgebuf_version() == edgebuf_version()); /* static */

    static const struct {
        edgebuf_result code;
        const char *name;
    } names[] = {
        {EDGEBUF_OK, "EDGEBUF_OK"},
        {EDGEBUF_ERR_INVALID_ARGUMENT, "EDGEBUF_ERR_INVALID_ARGUMENT"},
        {EDGEBUF_ERR_INVALID_CONFIG, "EDGEBUF_ERR_INVALID_CONFIG"},
        {EDGEBUF_ERR_INVALID_RECORD, "EDGEBUF_ERR_INVALID_RECORD"},
        {EDGEBUF_ERR_FULL, "EDGEBUF_ERR_FULL"},
        {EDGEBUF_ERR_TIMEOUT, "EDGEBUF_ERR_TIMEOUT"},
        {EDGEBUF_ERR_CLOSED, "EDGEBUF_ERR_CLOSED"},
        {EDGEBUF_ERR_STORAGE, "EDGEBUF_ERR_STORAGE"},
        {EDGEBUF_ERR_LOCKED, "EDGEBUF_ERR_LOCKED"},
        {EDGEBUF_ERR_CORRUPT, "EDGEBUF_ERR_CORRUPT"},
        {EDGEBUF_ERR_BUFFER_TOO_SMALL, "EDGEBUF_ERR_BUFFER_TOO_SMALL"},
        {EDGEBUF_ERR_INTERNAL, "EDGEBUF_ERR_INTERNAL"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *n = edgebuf_result_name(names[i].code);
        CHECK(n != NULL && strcmp(n, names[i].name) == 0);
    }
    static const edgebuf_result unknown[] = {-1, 11, 12, 98, 100, INT32_MIN, INT32_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *n = edgebuf_result_name(unknown[i]);
        CHECK(n != NULL && strcmp(n, "EDGEBUF_UNKNOWN") == 0);
    }
    /* The codes are fixed forever (docs/reference.md, C API). */
    CHECK(EDGEBUF_OK == 0 && EDGEBUF_ERR_INVALID_ARGUMENT == 1 && EDGEBUF_ERR_INVALID_CONFIG == 2);
    CHECK(EDGEBUF_ERR_INVALID_RECORD == 3 && EDGEBUF_ERR_FULL == 4 && EDGEBUF_ERR_TIMEOUT == 5);
    CHECK(EDGEBUF_ERR_CLOSED == 6 && EDGEBUF_ERR_STORAGE == 7 && EDGEBUF_ERR_LOCKED == 8);
    CHECK(EDGEBUF_ERR_CORRUPT == 9 && EDGEBUF_ERR_BUFFER_TOO_SMALL == 10);
    CHECK(EDGEBUF_ERR_INTERNAL == 99);
    CHECK(sizeof(edgebuf_status_t) >= EDGEBUF_STATUS_SIZE_V1);
    CHECK(offsetof(edgebuf_status_t, dead_lettered_total) + 8 == EDGEBUF_STATUS_SIZE_V1);
    CHECK(offsetof(edgebuf_status_t, budget_left_bytes) + 8 == EDGEBUF_STATUS_SIZE_V2);
    CHECK(sizeof(edgebuf_result) == 4);

    /* last_error: "" on a thread with no failure, never NULL, per thread. */
    fresh_job fj;
    memset(&fj, 0, sizeof fj);
    pthread_t t;
    if (pthread_create(&t, NULL, fresh_thread, &fj) != 0) {
        DIE("pthread_create");
    }
    pthread_join(t, NULL);
    CHECK(fj.not_null);
    CHECK(fj.empty_at_start);
    CHECK(fj.set_after_failure);
    CHECK(fj.kept_after_success);
}
