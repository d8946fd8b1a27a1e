/*
 * The C API test of edgebuf: every function of include/edgebuf.h, its argument checks and its
 * threading rules, against a tiny HTTP receiver running in this process.
 *
 * One program (api_test), one file per area:
 *   check.h, check.c  the check macros, the counters, time and logging helpers
 *   receiver.c        the in-process HTTP receiver that counts what arrives
 *   static.c          version, result names and codes, struct sizes, last_error per thread
 *   config.c          edgebuf_config_* and edgebuf_config_from_env, open's argument checks
 *   status.c          edgebuf_status and edgebuf_status_json
 *   log.c             edgebuf_log's record checks and limits, logging from several threads
 *   events.c          the event callback: what it may call on its own handle
 *   delivery.c        everything logged arrived; the status counters and events agree
 *   lifecycle.c       unreachable endpoint, the file lock, close while threads log, reopen
 *   main.c            runs the areas in order and prints the one summary line
 *
 * Why one program and not one per area: the areas are steps of one scenario on one buffer
 * file. Records left on disk by the unreachable-endpoint phase are the next open's
 * pending_at_open; every record logged by any area is counted (g_logged_ok) and must reach the
 * receiver exactly once, which is checked at the end over the whole run; the callback checks
 * need the delivery the logging areas caused. Separate programs would each need their own
 * receiver, file and setup, and would check less. The scripts (tests/c/run.sh,
 * scripts/targets.sh) build every .c file of tests/c/api into one binary, so a new area file
 * needs no script change.
 *
 * Builds as C11 (-std=c11 -Wall -Wextra -Wpedantic -Werror) and as C++17 (g++ -x c++), which
 * proves the header compiles in both languages. tests/c/run.sh builds and runs it under
 * AddressSanitizer + UBSan and under valgrind. EDGEBUF_TEST_SMALL=1 shrinks the workload (for
 * valgrind). SIGPIPE keeps its default action on purpose: neither the library nor this test
 * may raise it (the receiver closes keep-alive connections now and then to provoke it).
 *
 * Prints one summary line; exits 1 if any check failed.
 */
#ifndef EDGEBUF_API_TEST_CHECK_H
#define EDGEBUF_API_TEST_CHECK_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "edgebuf.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* ---- checks ---------------------------------------------------------------------------- */

extern int g_checks;
extern int g_failures;
extern int g_small;           /* EDGEBUF_TEST_SMALL=1: a modest workload for valgrind */
extern uint64_t g_logged_ok;  /* every edgebuf_log that returned OK, all handles, all threads */

#define LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_SEQ_CST)

void check_(int ok, const char *expr, const char *file, int line);
int check_rc_(edgebuf_result got, edgebuf_result want, const char *expr, const char *file,
              int line);

/* CHECK(cond): counts a check; on failure prints file:line, the expression and last_error. */
#define CHECK(cond) check_((cond) ? 1 : 0, #cond, __FILE__, __LINE__)
/* CHECK_RC(call, code): the call must return exactly `code`. */
#define CHECK_RC(call, want) check_rc_((call), (want), #call, __FILE__, __LINE__)

/* A fatal condition: the rest of the test cannot run safely. */
void die(const char *what, const char *file, int line);
#define DIE(what) die((what), __FILE__, __LINE__)

int last_error_has(const char *needle);

/* ---- time -------------------------------------------------------------------------------- */

uint64_t now_ms(void);
void sleep_ms(unsigned ms);
/* Waits until *counter >= want; 0 if timeout_ms passed first. */
int wait_until(const uint64_t *counter, uint64_t want, unsigned timeout_ms);

/* ---- logging helpers ------------------------------------------------------------------- */

/* Logs `n` bytes from an exactly sized heap copy (no NUL after it: ASan sees any over-read). */
edgebuf_result log_exact(edgebuf_t *h, const char *s, size_t n);
edgebuf_result log_str(edgebuf_t *h, const char *s);
/* pending = pending_at_open + logged - delivered - dropped - dead_lettered, no underflow. */
int invariant_holds(const edgebuf_status_t *st);

/* ---- the receiver (receiver.c) ----------------------------------------------------------- */

#define RX_MAX_CONNS 16

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

extern receiver g_rx;
void rx_start(receiver *rx);
void rx_stop(receiver *rx);

/* ---- the event callback (events.c) ------------------------------------------------------- */

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

void on_event(const edgebuf_event_t *ev, void *user_data);

/* ---- logging threads (log.c) ------------------------------------------------------------- */

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

void *log_worker(void *arg);

/* ---- the areas, in the order main runs them ---------------------------------------------- */

void test_static_functions(void);                                  /* static.c */
void test_config(const char *path, const char *endpoint);          /* config.c */
edgebuf_config_t *env_config(const char *path, const char *endpoint);
void test_unreachable_endpoint(const char *path, const char *dead_endpoint); /* lifecycle.c */
void test_second_open_is_locked(edgebuf_config_t *cfg, const char *path, const char *alias,
                                const char *endpoint);
void test_status_args(edgebuf_t *h);                               /* status.c */
void test_log_args(edgebuf_t *h);                                  /* log.c */
void test_log_threads(edgebuf_t *h, int per_thread);
void test_all_delivered(edgebuf_t *h, cb_ctx *ctx, uint64_t logged_before_open); /* delivery.c */
void test_status_json(edgebuf_t *h);                               /* status.c */
void test_callback_calls(cb_ctx *ctx);                             /* events.c */
void test_close_while_logging(edgebuf_t *h, cb_ctx *ctx); /* lifecycle.c; closes h */
void test_reopen(const char *alias, const char *endpoint);

#endif
