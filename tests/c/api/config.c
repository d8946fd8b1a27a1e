/* Configuration: edgebuf_config_set's key and value checks (a bad value names the key, never
   the value), the event callback setter, edgebuf_config_from_env (all or nothing), and
   edgebuf_open's argument checks. env_config builds the main handle's configuration. */
#include "check.h"

#include <stdlib.h>

static const char *const ENV_VARS[] = {
    "EDGEBUF_ENDPOINT",         "EDGEBUF_PATH",          "EDGEBUF_COMMIT_INTERVAL_MS",
    "EDGEBUF_BATCH_LINGER_MS",  "EDGEBUF_RETRY_INITIAL_MS", "EDGEBUF_RETRY_MAX_MS",
    "EDGEBUF_HTTP_PROXY",       "EDGEBUF_RECORD_MAX_BYTES", "EDGEBUF_MEMORY_MAX_RECORDS",
    "EDGEBUF_NOT_A_KEY",        "EDGEBUF_HTTP_HEADER_X_API_KEY",
};

static void unset_env(void) {
    for (size_t i = 0; i < sizeof ENV_VARS / sizeof ENV_VARS[0]; i++) {
        unsetenv(ENV_VARS[i]);
    }
}

void test_config(const char *path, const char *endpoint) {
    edgebuf_config_t *cfg = edgebuf_config_new();
    if (cfg == NULL) {
        DIE("edgebuf_config_new returned NULL");
    }
    CHECK_RC(edgebuf_config_set(NULL, "path", path), EDGEBUF_ERR_INVALID_ARGUMENT);
    CHECK(edgebuf_last_error()[0] != '\0');
    CHECK_RC(edgebuf_config_set(cfg, NULL, "x"), EDGEBUF_ERR_INVALID_ARGUMENT);
    CHECK_RC(edgebuf_config_set(cfg, "path", NULL), EDGEBUF_ERR_INVALID_ARGUMENT);
    CHECK_RC(edgebuf_config_set(cfg, "no.such.key", "1"), EDGEBUF_ERR_INVALID_CONFIG);
    CHECK(last_error_has("no.such.key"));
    CHECK_RC(edgebuf_config_set(cfg, "Path", path), EDGEBUF_ERR_INVALID_CONFIG); /* case */
    CHECK_RC(edgebuf_config_set(cfg, "\xff\xfe", "1"), EDGEBUF_ERR_INVALID_CONFIG);
    /* A bad value names the key, never the value. */
    CHECK_RC(edgebuf_config_set(cfg, "commit.interval_ms", "zq-bogus-77"),
             EDGEBUF_ERR_INVALID_CONFIG);
    CHECK(last_error_has("commit.interval_ms"));
    CHECK(!last_error_has("zq-bogus-77"));
    CHECK_RC(edgebuf_config_set(cfg, "commit.interval_ms", "-5"), EDGEBUF_ERR_INVALID_CONFIG);
    CHECK_RC(edgebuf_config_set(cfg, "capacity.when_full", "sideways"),
             EDGEBUF_ERR_INVALID_CONFIG);
    CHECK(last_error_has("capacity.when_full"));
    CHECK_RC(edgebuf_config_set(cfg, "durability", "sometimes"), EDGEBUF_ERR_INVALID_CONFIG);
    CHECK_RC(edgebuf_config_set(cfg, "http.header.Host", "zq-secret-host"),
             EDGEBUF_ERR_INVALID_CONFIG);
    CHECK(!last_error_has("zq-secret-host"));
    CHECK_RC(edgebuf_config_set(cfg, "http.header.X-Api-Key", "zq-secret\r\nX: y"),
             EDGEBUF_ERR_INVALID_CONFIG);
    CHECK(!last_error_has("zq-secret"));
    CHECK_RC(edgebuf_config_set(cfg, "http.header.X-Api-Key", "zq-secret-key"), EDGEBUF_OK);
    CHECK_RC(edgebuf_config_set(cfg, "endpoint", "ftp://example.com/"),
             EDGEBUF_ERR_INVALID_CONFIG);
    CHECK_RC(edgebuf_config_set(cfg, "commit.interval_ms", "25"), EDGEBUF_OK);
    CHECK_RC(edgebuf_config_set(cfg, "commit.interval_ms", ""), EDGEBUF_OK); /* default */
    CHECK_RC(edgebuf_config_set(cfg, "record.max_bytes", "4096"), EDGEBUF_OK);
    CHECK_RC(edgebuf_config_set(cfg, "durability", "sync"), EDGEBUF_OK);
    CHECK_RC(edgebuf_config_set(cfg, "durability", "async"), EDGEBUF_OK);
    CHECK_RC(edgebuf_config_set_event_callback(NULL, on_event, NULL),
             EDGEBUF_ERR_INVALID_ARGUMENT);
    CHECK_RC(edgebuf_config_set_event_callback(cfg, on_event, NULL), EDGEBUF_OK);
    CHECK_RC(edgebuf_config_set_event_callback(cfg, NULL, NULL), EDGEBUF_OK); /* removes */
    edgebuf_config_free(cfg);
    edgebuf_config_free(NULL); /* a no-op */

    /* edgebuf_open: NULL arguments, missing endpoint. */
    edgebuf_t *h = (edgebuf_t *)&h; /* a sentinel that open must overwrite with NULL */
    CHECK_RC(edgebuf_open(NULL, &h), EDGEBUF_ERR_INVALID_ARGUMENT);
    CHECK(h == NULL);
    cfg = edgebuf_config_new();
    CHECK_RC(edgebuf_config_set(cfg, "path", path), EDGEBUF_OK);
    CHECK_RC(edgebuf_open(cfg, NULL), EDGEBUF_ERR_INVALID_ARGUMENT);
    h = (edgebuf_t *)&h;
    CHECK_RC(edgebuf_open(cfg, &h), EDGEBUF_ERR_INVALID_CONFIG); /* no endpoint */
    CHECK(h == NULL);
    CHECK(last_error_has("endpoint"));

    /* edgebuf_config_from_env: all or nothing, a bad value names the variable. */
    CHECK_RC(edgebuf_config_from_env(NULL), EDGEBUF_ERR_INVALID_ARGUMENT);
    setenv("EDGEBUF_ENDPOINT", endpoint, 1);
    setenv("EDGEBUF_MEMORY_MAX_RECORDS", "zq-bad-9", 1);
    CHECK_RC(edgebuf_config_from_env(cfg), EDGEBUF_ERR_INVALID_CONFIG);
    CHECK(last_error_has("EDGEBUF_MEMORY_MAX_RECORDS"));
    CHECK(!last_error_has("zq-bad-9"));
    h = (edgebuf_t *)&h;
    CHECK_RC(edgebuf_open(cfg, &h), EDGEBUF_ERR_INVALID_CONFIG); /* endpoint not applied */
    CHECK(h == NULL);
    CHECK(last_error_has("endpoint"));
    edgebuf_config_free(cfg);
    unset_env();
}

/* The config of the main handle, built from the environment. */
edgebuf_config_t *env_config(const char *path, const char *endpoint) {
    unset_env();
    setenv("EDGEBUF_PATH", path, 1);
    setenv("EDGEBUF_ENDPOINT", endpoint, 1);
    setenv("EDGEBUF_COMMIT_INTERVAL_MS", "20", 1);
    setenv("EDGEBUF_BATCH_LINGER_MS", "5", 1);
    setenv("EDGEBUF_RETRY_INITIAL_MS", "20", 1);
    setenv("EDGEBUF_RETRY_MAX_MS", "200", 1);
    setenv("EDGEBUF_HTTP_PROXY", "none", 1);
    setenv("EDGEBUF_RECORD_MAX_BYTES", "4096", 1);
    setenv("EDGEBUF_HTTP_HEADER_X_API_KEY", "zq-secret-key", 1);
    setenv("EDGEBUF_NOT_A_KEY", "ignored", 1); /* names no key: ignored */
    edgebuf_config_t *cfg = edgebuf_config_new();
    if (cfg == NULL) {
        DIE("edgebuf_config_new");
    }
    CHECK_RC(edgebuf_config_from_env(cfg), EDGEBUF_OK);
    unset_env();
    return cfg;
}
