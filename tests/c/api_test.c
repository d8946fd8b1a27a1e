/*
 * The C API test of edgebuf: every function of include/edgebuf.h, its argument checks and its
 * threading rules, against a tiny HTTP receiver running in this process.
 *
 * Builds as C11 (-std=c11 -Wall -Wextra -Wpedantic -Werror) and as C++17 (g++ -x c++), which
 * proves the header compiles in both languages. tests/c/run.sh builds and runs it under
 * AddressSanitizer + UBSan and under valgrind. EDGEBUF_TEST_SMALL=1 shrinks the workload (for
 * valgrind). SIGPIPE keeps its default action on purpose: neither the library nor this test
 * may raise it (the receiver closes keep-alive connections now and then to provoke it).
 *
 * Prints one summary line; exits 1 if any check failed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "edgebuf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* ---- checks ---------------------------------------------------------------------------- */

static int g_checks;
static int g_failures;

#define LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_SEQ_CST)

static void check_(int ok, const char *expr, const char *file, int line) {
    ADD(&g_checks, 1);
    if (!ok) {
        ADD(&g_failures, 1);
        fprintf(stderr, "%s:%d: CHECK failed: %s (edgebuf_last_error: \"%s\")\n", file, line,
                expr, edgebuf_last_error());
    }
}

static int check_rc_(edgebuf_result got, edgebuf_result want, const char *expr, const char *file,
                     int line) {
    ADD(&g_checks, 1);
    if (got != want) {
        ADD(&g_failures, 1);
        fprintf(stderr, "%s:%d: CHECK failed: %s returned %s (%d), expected %s "
                        "(edgebuf_last_error: \"%s\")\n",
                file, line, expr, edgebuf_result_name(got), (int)got, edgebuf_result_name(want),
                edgebuf_last_error());
        return 0;
    }
    return 1;
}

/* CHECK(cond): counts a check; on failure prints file:line, the expression and last_error. */
#define CHECK(cond) check_((cond) ? 1 : 0, #cond, __FILE__, __LINE__)
/* CHECK_RC(call, code): the call must return exactly `code`. */
#define CHECK_RC(call, want) check_rc_((call), (want), #call, __FILE__, __LINE__)

/* A fatal condition: the rest of the test cannot run safely. */
static void die(const char *what, const char *file, int line) {
    fprintf(stderr, "%s:%d: FATAL: %s (edgebuf_last_error: \"%s\")\n", file, line, what,
            edgebuf_last_error());
    fprintf(stdout, "api_test: FAILED (fatal: %s) after %d checks\n", what, LOAD(&g_checks));
    fflush(NULL);
    _exit(2);
}
#define DIE(what) die((what), __FILE__, __LINE__)

static int last_error_has(const char *needle) {
    const char *e = edgebuf_last_error();
    return e != NULL && strstr(e, needle) != NULL;
}

/* ---- time -------------------------------------------------------------------------------- */

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms) {
    struct timespec ts;
    ts.tv_sec = (time_t)(ms / 1000u);
    ts.tv_nsec = (long)(ms % 1000u) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int g_small; /* EDGEBUF_TEST_SMALL=1: a modest workload for valgrind */

/* ---- the receiver: HTTP/1.1 keep-alive, answers 200 with Content-Length: 0 ---------------- */

#define RX_MAX_CONNS 16
#define RX_MAX_SEQ (1u << 20)
#define RX_MAX_HEADER 65536u
#define RX_MAX_BUF (32u << 20)
/* The receiver closes a connection after this many answers, as servers close idle
   keep-alive connections: the library's next write on it must neither fail the batch nor
   raise SIGPIPE. */
#define RX_CLOSE_EVERY 4u

typedef struct rx_conn {
    int fd;
    char *buf;
    size_t len;
    size_t cap;
    unsigned served;
} rx_conn;

typedef struct receiver {
    int listen_fd;
    int port;
    pthread_t thread;
    int stop;
    uint64_t envelopes; /* "seq": occurrences in answered bodies */
    uint64_t requests;
    uint64_t duplicates;
    uint64_t bad; /* malformed or unexpected requests */
    unsigned char *seen;
    rx_conn conns[RX_MAX_CONNS];
} receiver;

static receiver g_rx;

static void rx_close(rx_conn *c) {
    if (c->fd >= 0) {
        close(c->fd);
    }
    free(c->buf);
    c->fd = -1;
    c->buf = NULL;
    c->len = c->cap = 0;
    c->served = 0;
}

static int rx_send_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Counts the envelopes of one body by their "seq": keys, noting duplicates. */
static void rx_count(receiver *rx, const char *body, size_t n) {
    static const char key[] = "\"seq\":";
    const size_t klen = sizeof key - 1;
    size_t i = 0;
    while (i + klen <= n) {
        const char *hit = (const char *)memmem(body + i, n - i, key, klen);
        if (hit == NULL) {
            break;
        }
        size_t j = (size_t)(hit - body) + klen;
        uint64_t seq = 0;
        int digits = 0;
        while (j < n && body[j] >= '0' && body[j] <= '9' && digits < 19) {
            seq = seq * 10u + (uint64_t)(body[j] - '0');
            j++;
            digits++;
        }
        ADD(&rx->envelopes, 1);
        if (digits == 0 || seq == 0 || seq >= RX_MAX_SEQ) {
            ADD(&rx->bad, 1);
        } else if (rx->seen[seq]) {
            ADD(&rx->duplicates, 1);
        } else {
            rx->seen[seq] = 1;
        }
        i = j;
    }
}

/* Serves every complete request in c->buf. Returns -1 when the connection is to be closed. */
static int rx_serve(receiver *rx, rx_conn *c) {
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    for (;;) {
        const char *end = (const char *)memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (end == NULL) {
            if (c->len > RX_MAX_HEADER) {
                ADD(&rx->bad, 1);
                return -1;
            }
            return 0;
        }
        size_t hlen = (size_t)(end - c->buf) + 4;
        char *h = (char *)malloc(hlen + 1);
        if (h == NULL) {
            return -1;
        }
        for (size_t i = 0; i < hlen; i++) {
            char ch = c->buf[i];
            h[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
        }
        h[hlen] = '\0';
        const char *cl = strstr(h, "\r\ncontent-length:");
        int chunked = strstr(h, "\r\ntransfer-encoding:") != NULL;
        int expect = strstr(h, "\r\nexpect:") != NULL;
        int post = strncmp(h, "post ", 5) == 0;
        unsigned long long clen = cl != NULL ? strtoull(cl + 17, NULL, 10) : 0;
        free(h);
        if (!post || cl == NULL || chunked || expect || clen > RX_MAX_BUF) {
            ADD(&rx->bad, 1);
            return -1;
        }
        if (c->len < hlen + (size_t)clen) {
            return 0;
        }
        rx_count(rx, c->buf + hlen, (size_t)clen);
        ADD(&rx->requests, 1);
        if (rx_send_all(c->fd, ok, sizeof ok - 1) != 0) {
            return -1;
        }
        size_t used = hlen + (size_t)clen;
        memmove(c->buf, c->buf + used, c->len - used);
        c->len -= used;
        c->served++;
        if (c->served % RX_CLOSE_EVERY == 0) {
            return -1;
        }
    }
}

static void *rx_main(void *arg) {
    receiver *rx = (receiver *)arg;
    struct pollfd fds[RX_MAX_CONNS + 1];
    int idx[RX_MAX_CONNS + 1];
    while (!LOAD(&rx->stop)) {
        nfds_t n = 0;
        fds[n].fd = rx->listen_fd;
        fds[n].events = POLLIN;
        fds[n].revents = 0;
        idx[n++] = -1;
        for (int i = 0; i < RX_MAX_CONNS; i++) {
            if (rx->conns[i].fd >= 0) {
                fds[n].fd = rx->conns[i].fd;
                fds[n].events = POLLIN;
                fds[n].revents = 0;
                idx[n++] = i;
            }
        }
        int r = poll(fds, n, 50);
        if (r <= 0) {
            continue;
        }
        if (fds[0].revents & POLLIN) {
            int fd = accept4(rx->listen_fd, NULL, NULL, SOCK_CLOEXEC);
            if (fd >= 0) {
                int slot = -1;
                for (int i = 0; i < RX_MAX_CONNS; i++) {
                    if (rx->conns[i].fd < 0) {
                        slot = i;
                        break;
                    }
                }
                if (slot < 0) {
                    close(fd);
                } else {
                    struct timeval tv;
                    tv.tv_sec = 2;
                    tv.tv_usec = 0;
                    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
                    rx->conns[slot].fd = fd;
                }
            }
        }
        for (nfds_t k = 1; k < n; k++) {
            if ((fds[k].revents & (POLLIN | POLLHUP | POLLERR)) == 0) {
                continue;
            }
            rx_conn *c = &rx->conns[idx[k]];
            if (c->cap - c->len < 65536) {
                size_t ncap = c->cap == 0 ? 131072 : c->cap * 2;
                char *nb = ncap <= RX_MAX_BUF ? (char *)realloc(c->buf, ncap) : NULL;
                if (nb == NULL) {
                    ADD(&rx->bad, 1);
                    rx_close(c);
                    continue;
                }
                c->buf = nb;
                c->cap = ncap;
            }
            ssize_t got = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
            if (got < 0 && (errno == EINTR || errno == EAGAIN)) {
                continue;
            }
            if (got <= 0) {
                rx_close(c);
                continue;
            }
            c->len += (size_t)got;
            if (rx_serve(rx, c) != 0) {
                rx_close(c);
            }
        }
    }
    for (int i = 0; i < RX_MAX_CONNS; i++) {
        rx_close(&rx->conns[i]);
    }
    return NULL;
}

static void rx_start(receiver *rx) {
    memset(rx, 0, sizeof *rx);
    for (int i = 0; i < RX_MAX_CONNS; i++) {
        rx->conns[i].fd = -1;
    }
    rx->seen = (unsigned char *)calloc(RX_MAX_SEQ, 1);
    if (rx->seen == NULL) {
        DIE("calloc");
    }
    rx->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (rx->listen_fd < 0) {
        DIE("socket");
    }
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t alen = sizeof a;
    if (bind(rx->listen_fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(rx->listen_fd, 64) != 0 ||
        getsockname(rx->listen_fd, (struct sockaddr *)&a, &alen) != 0) {
        DIE("bind/listen");
    }
    rx->port = ntohs(a.sin_port);
    if (pthread_create(&rx->thread, NULL, rx_main, rx) != 0) {
        DIE("pthread_create (receiver)");
    }
}

static void rx_stop(receiver *rx) {
    STORE(&rx->stop, 1);
    pthread_join(rx->thread, NULL);
    close(rx->listen_fd);
    free(rx->seen);
    rx->seen = NULL;
}

/* ---- helpers ----------------------------------------------------------------------------- */

static uint64_t g_logged_ok; /* every edgebuf_log that returned OK, all handles, all threads */

/* Logs `n` bytes from an exactly sized heap copy (no NUL after it: ASan sees any over-read). */
static edgebuf_result log_exact(edgebuf_t *h, const char *s, size_t n) {
    char *p = (char *)malloc(n > 0 ? n : 1);
    if (p == NULL) {
        DIE("malloc");
    }
    memcpy(p, s, n);
    edgebuf_result rc = edgebuf_log(h, p, n);
    free(p);
    if (rc == EDGEBUF_OK) {
        ADD(&g_logged_ok, 1);
    }
    return rc;
}

static edgebuf_result log_str(edgebuf_t *h, const char *s) { return log_exact(h, s, strlen(s)); }

/* pending = pending_at_open + logged - delivered - dropped - dead_lettered, no underflow. */
static int invariant_holds(const edgebuf_status_t *st) {
    uint64_t in = st->pending_at_open + st->logged_total;
    uint64_t out = st->delivered_total + st->dropped_total + st->dead_lettered_total;
    return in >= out && st->pending_records == in - out;
}

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

/* ---- the event callback ------------------------------------------------------------------ */

typedef struct cb_ctx {
    edgebuf_t *h; /* set once open returned; read by the callback */
    int main_closing;
    uint64_t events;
    uint64_t delivered;
    int running;
    int bad_event;
    int bad_close; /* edgebuf_close from the callback did not return INVALID_ARGUMENT */
    int bad_flush_sync;
    int status_behind; /* status did not yet count what a DELIVERED event reported */
    int own_done;
    edgebuf_result own_status, own_json, own_log, own_retry;
    /* block the callback once: close must wait for it */
    int block_next;
    int blocked;
    int release;
    int block_timed_out;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} cb_ctx;

static void on_event(const edgebuf_event_t *ev, void *user_data) {
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

/* ---- threads ----------------------------------------------------------------------------- */

typedef struct log_job {
    edgebuf_t *h;
    int id;
    int n;             /* records to log; 0 = until CLOSED (or the deadline) */
    uint64_t deadline; /* now_ms() bound for n == 0 */
    uint64_t ok;
    uint64_t closed;
    uint64_t other;
    edgebuf_result last_other;
    int done;
} log_job;

static void *log_worker(void *arg) {
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

/* ---- test sections ----------------------------------------------------------------------- */

static void test_static_functions(void) {
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
    /* The codes are fixed forever (SPEC 1). */
    CHECK(EDGEBUF_OK == 0 && EDGEBUF_ERR_INVALID_ARGUMENT == 1 && EDGEBUF_ERR_INVALID_CONFIG == 2);
    CHECK(EDGEBUF_ERR_INVALID_RECORD == 3 && EDGEBUF_ERR_FULL == 4 && EDGEBUF_ERR_TIMEOUT == 5);
    CHECK(EDGEBUF_ERR_CLOSED == 6 && EDGEBUF_ERR_STORAGE == 7 && EDGEBUF_ERR_LOCKED == 8);
    CHECK(EDGEBUF_ERR_CORRUPT == 9 && EDGEBUF_ERR_BUFFER_TOO_SMALL == 10);
    CHECK(EDGEBUF_ERR_INTERNAL == 99);
    CHECK(sizeof(edgebuf_status_t) >= EDGEBUF_STATUS_SIZE_V1);
    CHECK(offsetof(edgebuf_status_t, dead_lettered_total) + 8 == EDGEBUF_STATUS_SIZE_V1);
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

static void test_config(const char *path, const char *endpoint) {
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
static edgebuf_config_t *env_config(const char *path, const char *endpoint) {
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

static void test_status_args(edgebuf_t *h) {
    edgebuf_status_t st = EDGEBUF_STATUS_INIT;
    CHECK(st.struct_size == sizeof(edgebuf_status_t));
    CHECK_RC(edgebuf_status(NULL, &st), EDGEBUF_ERR_INVALID_ARGUMENT);
    CHECK_RC(edgebuf_status(h, NULL), EDGEBUF_ERR_INVALID_ARGUMENT);
    CHECK_RC(edgebuf_status(h, &st), EDGEBUF_OK);
    CHECK(st.struct_size == EDGEBUF_STATUS_SIZE_V1);
    CHECK(invariant_holds(&st));

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
    CHECK(sp.st.struct_size == EDGEBUF_STATUS_SIZE_V1);
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

static void test_status_json(edgebuf_t *h) {
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
            "\"pending_at_open\":",   "\"dead_lettered_total\":",
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

static void test_log_args(edgebuf_t *h) {
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

static int wait_until(const uint64_t *counter, uint64_t want, unsigned timeout_ms) {
    uint64_t deadline = now_ms() + timeout_ms;
    while (LOAD(counter) < want) {
        if (now_ms() > deadline) {
            return 0;
        }
        sleep_ms(5);
    }
    return 1;
}

/* ---- main -------------------------------------------------------------------------------- */

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

    /* ---- phase 1: an unreachable endpoint; records stay on disk for the next open ---- */
    {
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
    close(dead_fd);

    /* ---- phase 2: the main handle, with a callback ---- */
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

    /* One file, one owner: a second open (any spelling) is LOCKED and names the path. */
    {
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

    /* Four threads log at once while this one checks the invariant. */
    {
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

    /* The callback logs one record from the first DELIVERED event: wait for it, then flush. */
    {
        uint64_t deadline = now_ms() + 30000;
        while (!LOAD(&ctx.own_done) && now_ms() < deadline) {
            sleep_ms(5);
        }
        CHECK(LOAD(&ctx.own_done) == 1);
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
           is not a failed attempt (SPEC 3). */
        CHECK(st.failed_attempts_total == 0);
        CHECK(st.storage_degraded == 0);
        CHECK(st.oldest_pending_age_ms == 0);
        CHECK(st.disk_bytes > 0);
        /* Every DELIVERED event arrives (they coalesce, the counts add up). */
        CHECK(wait_until(&ctx.delivered, st.delivered_total, 10000));
        CHECK(LOAD(&ctx.delivered) == st.delivered_total);
    }
    test_status_json(h);

    /* What the callback did on its own handle. */
    CHECK(LOAD(&ctx.own_done) == 1);
    CHECK_RC(ctx.own_status, EDGEBUF_OK);
    CHECK_RC(ctx.own_json, EDGEBUF_ERR_BUFFER_TOO_SMALL);
    CHECK_RC(ctx.own_log, EDGEBUF_OK);
    CHECK_RC(ctx.own_retry, EDGEBUF_OK);
    CHECK(LOAD(&ctx.bad_close) == 0);
    CHECK(LOAD(&ctx.bad_flush_sync) == 0);
    CHECK(LOAD(&ctx.bad_event) == 0);
    CHECK(LOAD(&ctx.status_behind) == 0);

    /* ---- close while three threads log in a loop ----
       A call made after close has returned is undefined behaviour, so the loggers must be
       done before close can return: the callback is held inside an event (close waits for a
       running callback), the loggers call edgebuf_log until it says CLOSED, they are joined,
       and only then is the callback released and close allowed to finish. */
    STORE(&ctx.block_next, 1);
    CHECK_RC(log_str(h, "{\"before\":\"close\"}"), EDGEBUF_OK);
    CHECK_RC(edgebuf_flush(h, 30000), EDGEBUF_OK);
    int blocked = 0;
    {
        uint64_t deadline = now_ms() + 30000;
        pthread_mutex_lock(&ctx.mu);
        while (!LOAD(&ctx.blocked) && now_ms() < deadline) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&ctx.cv, &ctx.mu, &ts);
        }
        blocked = LOAD(&ctx.blocked);
        pthread_mutex_unlock(&ctx.mu);
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
    STORE(&ctx.main_closing, 1);
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
    pthread_mutex_lock(&ctx.mu);
    STORE(&ctx.release, 1);
    pthread_cond_broadcast(&ctx.cv);
    pthread_mutex_unlock(&ctx.mu);
    {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 60;
        if (pthread_timedjoin_np(ct, NULL, &ts) != 0) {
            DIE("edgebuf_close did not return within 60 s (deadlock?)");
        }
    }
    CHECK(!LOAD(&ctx.block_timed_out));
    CHECK_RC(cj.rc, EDGEBUF_OK);
    if (cj.rc != EDGEBUF_OK) {
        fprintf(stderr, "close said: %s\n", cj.msg);
    }
    STORE(&ctx.h, (edgebuf_t *)NULL);
    h = NULL;
    /* After close returned no callback runs. */
    {
        uint64_t events = LOAD(&ctx.events);
        CHECK(LOAD(&ctx.running) == 0);
        sleep_ms(100);
        CHECK(LOAD(&ctx.events) == events);
        CHECK(LOAD(&ctx.bad_close) == 0);
        CHECK(LOAD(&ctx.bad_flush_sync) == 0);
        CHECK(LOAD(&ctx.bad_event) == 0);
    }

    /* ---- phase 3: the lock is released; reopen, nothing pending, every record arrived ---- */
    {
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
    }
    CHECK(LOAD(&g_rx.envelopes) == LOAD(&g_logged_ok));
    CHECK(LOAD(&g_rx.duplicates) == 0);
    CHECK(LOAD(&g_rx.bad) == 0);
    CHECK(LOAD(&g_rx.requests) > 0);
    CHECK_RC(edgebuf_close(NULL, 0), EDGEBUF_ERR_INVALID_ARGUMENT);

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
