/* The C API test's one main: sets up the temporary directory, the receiver and a port nobody
   listens on, then runs the areas in order as one scenario on one buffer file (check.h says
   why one program), and prints the one summary line. */
#include "check.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

int main(void) {
    const char *small_env = getenv("EDGEBUF_TEST_SMALL");
    g_small = small_env != NULL && strcmp(small_env, "1") == 0;
    const int per_thread = g_small ? 50 : 1000;
    const uint64_t t0 = now_ms();

    /* SIGPIPE must be at its default action, before and after: the test does not hide it. */
    struct sigaction sa;
    sigaction(SIGPIPE, NULL, &sa);
    CHECK(sa.sa_handler == SIG_DFL);

    CHECK(edgebuf_last_error() != NULL && edgebuf_last_error()[0] == '\0');
    test_static_functions();

    char dirbuf[] = "/tmp/edgebuf-api-test-XXXXXX";
    if (mkdtemp(dirbuf) == NULL) {
        DIE("mkdtemp");
    }
    char *dir = realpath(dirbuf, NULL);
    if (dir == NULL) {
        DIE("realpath");
    }
    char path[PATH_MAX], alias[PATH_MAX], endpoint[128], dead_endpoint[128];
    snprintf(path, sizeof path, "%s/buffer.db", dir);
    snprintf(alias, sizeof alias, "%s/./sub/../buffer.db", dir);
    {
        char sub[PATH_MAX];
        snprintf(sub, sizeof sub, "%s/sub", dir);
        mkdir(sub, 0700);
    }

    rx_start(&g_rx);
    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%d/ingest?token=zq-secret-q", g_rx.port);

    /* A port nobody listens on: bound, never listening (connections are refused). */
    int dead_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    {
        struct sockaddr_in a;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t alen = sizeof a;
        if (dead_fd < 0 || bind(dead_fd, (struct sockaddr *)&a, sizeof a) != 0 ||
            getsockname(dead_fd, (struct sockaddr *)&a, &alen) != 0) {
            DIE("bind (dead port)");
        }
        snprintf(dead_endpoint, sizeof dead_endpoint, "http://127.0.0.1:%d/ingest",
                 ntohs(a.sin_port));
    }

    test_config(path, endpoint);

    /* Phase 1: an unreachable endpoint; records stay on disk for the next open. */
    test_unreachable_endpoint(path, dead_endpoint);
    close(dead_fd);

    /* Phase 2: the main handle, with a callback. */
    cb_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    pthread_mutex_init(&ctx.mu, NULL);
    pthread_cond_init(&ctx.cv, NULL);

    edgebuf_config_t *cfg = env_config(path, endpoint);
    CHECK_RC(edgebuf_config_set_event_callback(cfg, on_event, &ctx), EDGEBUF_OK);
    edgebuf_t *h = NULL;
    CHECK_RC(edgebuf_open(cfg, &h), EDGEBUF_OK);
    if (h == NULL) {
        DIE("edgebuf_open");
    }
    STORE(&ctx.h, h);
    const uint64_t logged_before_open = LOAD(&g_logged_ok);

    test_second_open_is_locked(cfg, path, alias, endpoint);
    edgebuf_config_free(cfg); /* the handle keeps its own copy */

    {
        edgebuf_status_t st = EDGEBUF_STATUS_INIT;
        CHECK_RC(edgebuf_status(h, &st), EDGEBUF_OK);
        CHECK(st.pending_at_open == 3);
        CHECK(st.logged_total == 0);
        CHECK(invariant_holds(&st));
    }
    test_status_args(h);
    test_log_args(h);

    test_log_threads(h, per_thread);
    test_all_delivered(h, &ctx, logged_before_open);
    test_status_json(h);
    test_callback_calls(&ctx);
    test_close_while_logging(h, &ctx); /* h is closed: not used again */

    /* Phase 3: the lock is released; reopen, nothing pending, every record arrived. */
    test_reopen(alias, endpoint);

    sigaction(SIGPIPE, NULL, &sa);
    CHECK(sa.sa_handler == SIG_DFL); /* the library never changes dispositions */

    uint64_t envelopes = LOAD(&g_rx.envelopes), requests = LOAD(&g_rx.requests);
    rx_stop(&g_rx);
    pthread_mutex_destroy(&ctx.mu);
    pthread_cond_destroy(&ctx.cv);

    /* Clean up the temporary directory. */
    {
        static const char *const names[] = {"buffer.db", "buffer.db-wal", "buffer.db-shm",
                                            "buffer.db.lock"};
        char p[PATH_MAX + 32];
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            snprintf(p, sizeof p, "%s/%s", dir, names[i]);
            unlink(p);
        }
        snprintf(p, sizeof p, "%s/sub", dir);
        rmdir(p);
        if (rmdir(dir) != 0) {
            fprintf(stderr, "note: %s not removed: %s\n", dir, strerror(errno));
        }
    }
    free(dir);

    int failures = LOAD(&g_failures);
    printf("api_test: %s: %d checks, %d failed; %" PRIu64 " records delivered in %" PRIu64
           " requests; %s workload; %.1f s\n",
           failures == 0 ? "PASS" : "FAIL", LOAD(&g_checks), failures, envelopes, requests,
           g_small ? "small" : "full", (double)(now_ms() - t0) / 1000.0);
    return failures == 0 ? 0 : 1;
}
