/*
 * A program that links its own SQLite (the system's libsqlite3) and edgebuf's static archive
 * into one executable, as firmware images do. Both must work: the program's sqlite3_* calls
 * reach the system SQLite (not the copy bundled inside edgebuf), and edgebuf stores records
 * that the system SQLite can then read back.
 *
 *   sqlite_clash DIR
 */
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "edgebuf.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: check failed: %s (%s)\n", __FILE__, __LINE__, #c, edgebuf_last_error()); return 1; } } while (0)

int main(int argc, char **argv) {
    CHECK(argc == 2);
    /* Our own SQLite is the system's: the version the header announced. */
    CHECK(strcmp(sqlite3_libversion(), SQLITE_VERSION) == 0);

    char path[4096];
    snprintf(path, sizeof path, "%s/buf.db", argv[1]);
    edgebuf_config_t *cfg = edgebuf_config_new();
    CHECK(cfg != NULL);
    CHECK(edgebuf_config_set(cfg, "path", path) == EDGEBUF_OK);
    CHECK(edgebuf_config_set(cfg, "endpoint", "http://127.0.0.1:9/ingest") == EDGEBUF_OK);
    edgebuf_t *eb = NULL;
    CHECK(edgebuf_open(cfg, &eb) == EDGEBUF_OK);
    edgebuf_config_free(cfg);
    for (int i = 0; i < 10; i++) {
        char rec[64];
        int n = snprintf(rec, sizeof rec, "{\"i\":%d}", i);
        CHECK(edgebuf_log(eb, rec, (size_t)n) == EDGEBUF_OK);
    }
    CHECK(edgebuf_sync(eb, 5000) == EDGEBUF_OK);
    CHECK(edgebuf_close(eb, 0) == EDGEBUF_ERR_TIMEOUT); /* endpoint down: records stay on disk */

    /* The system SQLite reads what edgebuf's SQLite wrote. */
    sqlite3 *db = NULL;
    CHECK(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    sqlite3_stmt *st = NULL;
    CHECK(sqlite3_prepare_v2(db, "SELECT count(*) FROM records", -1, &st, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    int n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    CHECK(n == 10);
    printf("sqlite_clash: system SQLite %s and edgebuf %s in one static program; 10 records read back\n",
           sqlite3_libversion(), edgebuf_version());
    return 0;
}
