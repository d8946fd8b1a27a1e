// Package edgebuf is the Go binding of libedgebuf, a durable on-device buffer that stores
// ML-inference JSON records in SQLite and delivers them in batches to an HTTP endpoint.
//
// The binding uses cgo and links the installed library through `pkg-config edgebuf` (make
// install, the libedgebuf-dev package, or a release archive with PKG_CONFIG_PATH pointing at
// its lib/pkgconfig). The repository's own tests build with the tag edgebuf_repo instead,
// which links the checkout's target/release (see cgo_repo.go).
//
// A Buffer is safe for concurrent use by any number of goroutines. Every method returns an
// *Error whose Code is one of the library's result codes; compare with errors.Is against the
// sentinels (ErrFull, ErrTimeout, ...). The README of the repository describes the contract.
package edgebuf

/*
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "edgebuf.h"

// The result of a call plus this thread's last error, copied before any other edgebuf call
// can run on the thread (edgebuf_last_error is thread-local and cgo calls may run on any
// thread). msg is malloc'd, NULL on success; the caller frees it.
typedef struct { int32_t code; char *msg; } eb_ret;

static eb_ret eb_wrap(edgebuf_result r) {
	eb_ret o;
	o.code = r;
	o.msg = NULL;
	if (r != EDGEBUF_OK) {
		const char *m = edgebuf_last_error();
		o.msg = strdup(m ? m : "");
	}
	return o;
}

static eb_ret eb_config_set(edgebuf_config_t *c, const char *k, const char *v) {
	return eb_wrap(edgebuf_config_set(c, k, v));
}
static eb_ret eb_config_from_env(edgebuf_config_t *c) { return eb_wrap(edgebuf_config_from_env(c)); }

extern void edgebufGoEvent(int32_t kind, uint64_t count, int32_t http_status, char *message, uintptr_t handle);

// The handle whose callback runs on this thread, 0 outside callbacks. A goroutine called back
// from C stays on that thread until it returns, so Close can tell it runs inside a callback.
static __thread uintptr_t eb_current_callback;

static void eb_event_trampoline(const edgebuf_event_t *ev, void *user_data) {
	uintptr_t saved = eb_current_callback;
	eb_current_callback = (uintptr_t)user_data;
	edgebufGoEvent(ev->kind, ev->count, ev->http_status, (char *)ev->message, (uintptr_t)user_data);
	eb_current_callback = saved;
}

static int eb_in_callback(uintptr_t handle) { return handle != 0 && eb_current_callback == handle; }

static eb_ret eb_config_set_events(edgebuf_config_t *c, uintptr_t handle) {
	return eb_wrap(edgebuf_config_set_event_callback(c, eb_event_trampoline, (void *)handle));
}

static eb_ret eb_open(const edgebuf_config_t *c, edgebuf_t **out) { return eb_wrap(edgebuf_open(c, out)); }

static eb_ret eb_log(edgebuf_t *h, const char *p, size_t n) {
	// An empty Go slice has no pointer: pass "" so the library answers INVALID_RECORD.
	return eb_wrap(edgebuf_log(h, p ? p : "", n));
}
static eb_ret eb_flush(edgebuf_t *h, uint32_t t) { return eb_wrap(edgebuf_flush(h, t)); }
static eb_ret eb_sync(edgebuf_t *h, uint32_t t) { return eb_wrap(edgebuf_sync(h, t)); }
static eb_ret eb_retry_now(edgebuf_t *h) { return eb_wrap(edgebuf_retry_now(h)); }
static eb_ret eb_status(edgebuf_t *h, edgebuf_status_t *st) {
	memset(st, 0, sizeof *st);
	st->struct_size = (uint32_t)sizeof *st;
	return eb_wrap(edgebuf_status(h, st));
}
static eb_ret eb_status_json(edgebuf_t *h, char *buf, size_t cap, size_t *len) {
	return eb_wrap(edgebuf_status_json(h, buf, cap, len));
}
static eb_ret eb_close(edgebuf_t *h, uint32_t t) { return eb_wrap(edgebuf_close(h, t)); }
*/
import "C"

import (
	"encoding/json"
	"math"
	"runtime"
	"runtime/cgo"
	"sort"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// Config holds configuration keys and values exactly as the README's Configuration table names them, for
// example {"path": "/var/lib/app/buf.db", "endpoint": "https://...", "commit.interval_ms":
// "100", "http.header.X-Api-Key": "..."}. Keys are applied in sorted order; the first bad key
// makes Open fail with ErrInvalidConfig and a message naming it.
type Config map[string]string

// Options are everything Open can take. Config and FromEnv may be combined.
type Options struct {
	// Config keys, applied first.
	Config Config
	// FromEnv applies every EDGEBUF_* environment variable after Config, so the deployment
	// environment overrides what the program set (edgebuf_config_from_env).
	FromEnv bool
	// OnEvent, if set, receives the library's events (EventDelivered, EventOffline, ...).
	// It runs on a library thread, one event at a time; a slow function delays later events
	// only. It may call Status, StatusJSON, Log and RetryNow on its own Buffer; Flush, Sync
	// and Close from it return ErrInvalidArgument. A panic in it crashes the program.
	// If it captures its own *Buffer, that Buffer is never garbage-collected before Close.
	OnEvent func(Event)
}

// Buffer is an open buffer. Close it with Close; a finalizer closes a forgotten Buffer with a
// zero timeout as a backstop only (records stay on disk for the next Open).
type Buffer struct {
	mu     sync.Mutex
	cond   sync.Cond
	h      *C.edgebuf_t
	active int // calls between enter and leave
	state  int // stateOpen, stateClosing, stateClosed
	handle cgo.Handle
}

const (
	stateOpen = iota
	stateClosing
	stateClosed
)

// Open opens (creating if needed) the buffer file named by cfg["path"] and starts delivery to
// cfg["endpoint"]. It fails with ErrInvalidConfig, ErrLocked (another handle or process holds
// the file), ErrCorrupt or ErrStorage.
func Open(cfg Config) (*Buffer, error) {
	return OpenOptions(Options{Config: cfg})
}

// OpenWithEvents is Open with an event function (see Options.OnEvent).
func OpenWithEvents(cfg Config, onEvent func(Event)) (*Buffer, error) {
	return OpenOptions(Options{Config: cfg, OnEvent: onEvent})
}

// OpenOptions opens a buffer with every option.
func OpenOptions(o Options) (*Buffer, error) {
	c := C.edgebuf_config_new()
	if c == nil {
		return nil, newError(codeInternal, "edgebuf_config_new: out of memory")
	}
	defer C.edgebuf_config_free(c)

	keys := make([]string, 0, len(o.Config))
	for k := range o.Config {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if strings.IndexByte(k, 0) >= 0 || strings.IndexByte(o.Config[k], 0) >= 0 {
			return nil, newError(codeInvalidConfig, "a configuration key or value contains a NUL byte")
		}
		ck, cv := C.CString(k), C.CString(o.Config[k])
		err := result(C.eb_config_set(c, ck, cv))
		C.free(unsafe.Pointer(ck))
		C.free(unsafe.Pointer(cv))
		if err != nil {
			return nil, err
		}
	}
	if o.FromEnv {
		if err := result(C.eb_config_from_env(c)); err != nil {
			return nil, err
		}
	}

	b := &Buffer{}
	b.cond.L = &b.mu
	if o.OnEvent != nil {
		// The handle holds only the function, never the Buffer, so the finalizer can run.
		b.handle = cgo.NewHandle(o.OnEvent)
		if err := result(C.eb_config_set_events(c, C.uintptr_t(b.handle))); err != nil {
			b.handle.Delete()
			return nil, err
		}
	}
	var h *C.edgebuf_t
	if err := result(C.eb_open(c, &h)); err != nil {
		if b.handle != 0 {
			b.handle.Delete()
		}
		return nil, err
	}
	b.h = h
	runtime.SetFinalizer(b, (*Buffer).finalize)
	return b, nil
}

// finalize is the backstop for a Buffer nobody closed. Nothing else can be using b here.
func (b *Buffer) finalize() {
	b.mu.Lock()
	open := b.state == stateOpen
	b.mu.Unlock()
	if open {
		// Close waits for the final write and a running callback: keep that off the single
		// finalizer goroutine.
		go func() { _ = b.Close(0) }()
	}
}

// enter registers a call on the handle; it fails once Close has started.
func (b *Buffer) enter() (*C.edgebuf_t, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state != stateOpen {
		return nil, newError(codeClosed, "the buffer is closed")
	}
	b.active++
	return b.h, nil
}

func (b *Buffer) leave() {
	b.mu.Lock()
	b.active--
	if b.active == 0 {
		b.cond.Broadcast()
	}
	b.mu.Unlock()
}

// Log accepts one record: exactly one JSON value (UTF-8, nested at most 128 deep, at most
// record.max_bytes). The bytes are copied; p may be reused at once. In async mode (the default)
// it returns once the record is queued in memory. Errors: ErrInvalidRecord (nothing stored),
// ErrFull (capacity policy), ErrStorage (sync mode while the disk fails), ErrClosed.
func (b *Buffer) Log(p []byte) error {
	h, err := b.enter()
	if err != nil {
		return err
	}
	defer b.leave()
	var ptr *C.char
	if len(p) > 0 {
		ptr = (*C.char)(unsafe.Pointer(&p[0]))
	}
	return result(C.eb_log(h, ptr, C.size_t(len(p))))
}

// LogJSON marshals v with encoding/json and logs it. A value json.Marshal refuses is
// ErrInvalidRecord.
func (b *Buffer) LogJSON(v any) error {
	p, err := json.Marshal(v)
	if err != nil {
		return newError(codeInvalidRecord, "json.Marshal: "+err.Error())
	}
	return b.Log(p)
}

// Flush waits up to timeout until every record logged before the call is delivered, dropped
// or dead-lettered. It returns nil or ErrTimeout (an outage, a 401: nothing is lost). A zero
// timeout only checks. Timeouts are rounded up to milliseconds.
func (b *Buffer) Flush(timeout time.Duration) error {
	h, err := b.enter()
	if err != nil {
		return err
	}
	defer b.leave()
	return result(C.eb_flush(h, millis(timeout)))
}

// Sync waits up to timeout until every record logged before the call is committed and
// fsync'd: nil, ErrTimeout (nothing is lost) or ErrStorage while storage is degraded.
func (b *Buffer) Sync(timeout time.Duration) error {
	h, err := b.enter()
	if err != nil {
		return err
	}
	defer b.leave()
	return result(C.eb_sync(h, millis(timeout)))
}

// RetryNow tells the library the network is back: it cuts a running backoff short (not a
// Retry-After wait). It never blocks.
func (b *Buffer) RetryNow() error {
	h, err := b.enter()
	if err != nil {
		return err
	}
	defer b.leave()
	return result(C.eb_retry_now(h))
}

// Status returns the buffer's counters and state (the C API section of the README).
func (b *Buffer) Status() (Status, error) {
	h, err := b.enter()
	if err != nil {
		return Status{}, err
	}
	defer b.leave()
	var st C.edgebuf_status_t
	if err := result(C.eb_status(h, &st)); err != nil {
		return Status{}, err
	}
	return statusFromC(&st), nil
}

// StatusJSON returns the status as the library's JSON object (edgebuf_status_json).
func (b *Buffer) StatusJSON() ([]byte, error) {
	h, err := b.enter()
	if err != nil {
		return nil, err
	}
	defer b.leave()
	buf := make([]byte, statusJSONInitialSize)
	for {
		var n C.size_t
		r := C.eb_status_json(h, (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)), &n)
		if r.code == codeBufferTooSmall {
			C.free(unsafe.Pointer(r.msg))
			buf = make([]byte, int(n)+256) // the size needed may grow between calls
			continue
		}
		if err := result(r); err != nil {
			return nil, err
		}
		return buf[:int(n)], nil
	}
}

// Close stops intake, writes what is in memory to disk, tries to deliver for at most timeout,
// stops every library thread and releases the file lock. It returns nil when nothing is
// pending and ErrTimeout when records stay on disk for the next Open (nothing is lost), or
// ErrStorage when records held in memory could not be written. The handle is released in all
// these cases.
//
// Close waits for calls already running on other goroutines (a Flush or Sync among them
// returns at its own timeout) and makes later calls return ErrClosed. Calling Close again, or
// while another Close runs, returns ErrClosed, as os.File does. Close from the Buffer's own
// OnEvent function returns ErrInvalidArgument and leaves the Buffer open.
func (b *Buffer) Close(timeout time.Duration) error {
	b.mu.Lock()
	if b.handle != 0 && C.eb_in_callback(C.uintptr_t(b.handle)) != 0 {
		b.mu.Unlock()
		return newError(codeInvalidArgument, "Close cannot be called from an event function of the same Buffer")
	}
	if b.state != stateOpen {
		b.mu.Unlock()
		return newError(codeClosed, "the buffer is already closed")
	}
	b.state = stateClosing
	for b.active > 0 {
		b.cond.Wait()
	}
	h := b.h
	b.mu.Unlock()

	// The handle is freed in every case here: INVALID_ARGUMENT only comes back to a callback
	// of this handle, which was refused above.
	err := result(C.eb_close(h, millis(timeout)))

	b.mu.Lock()
	defer b.mu.Unlock()
	b.state = stateClosed
	b.h = nil
	if b.handle != 0 {
		b.handle.Delete() // no callback runs once edgebuf_close has returned
		b.handle = 0
	}
	runtime.SetFinalizer(b, nil)
	return err
}

// statusJSONInitialSize is the first buffer StatusJSON tries (a variable for the tests).
var statusJSONInitialSize = 1024

// Version returns the library's version, "MAJOR.MINOR.PATCH".
func Version() string {
	return C.GoString(C.edgebuf_version())
}

func millis(d time.Duration) C.uint32_t {
	if d <= 0 {
		return 0
	}
	ms := (d + time.Millisecond - 1) / time.Millisecond
	if ms > math.MaxUint32 {
		ms = math.MaxUint32
	}
	return C.uint32_t(ms)
}

// result turns a wrapped C result into nil or an *Error, freeing the copied message.
func result(r C.eb_ret) error {
	if r.code == C.EDGEBUF_OK {
		return nil
	}
	msg := ""
	if r.msg != nil {
		msg = C.GoString(r.msg)
		C.free(unsafe.Pointer(r.msg))
	}
	return newError(int(r.code), msg)
}

// resultName is edgebuf_result_name.
func resultName(code int) string {
	return C.GoString(C.edgebuf_result_name(C.edgebuf_result(code)))
}

func statusFromC(st *C.edgebuf_status_t) Status {
	return Status{
		PendingRecords:      uint64(st.pending_records),
		PendingBytes:        uint64(st.pending_bytes),
		DiskBytes:           uint64(st.disk_bytes),
		LoggedTotal:         uint64(st.logged_total),
		DeliveredTotal:      uint64(st.delivered_total),
		DroppedTotal:        uint64(st.dropped_total),
		DeadLetterRecords:   uint64(st.dead_letter_records),
		FailedAttemptsTotal: uint64(st.failed_attempts_total),
		ConsecutiveFailures: uint32(st.consecutive_failures),
		NextRetryInMs:       uint32(st.next_retry_in_ms),
		OldestPendingAgeMs:  uint64(st.oldest_pending_age_ms),
		LastSuccessUnixMs:   int64(st.last_success_unix_ms),
		LastHTTPStatus:      int32(st.last_http_status),
		Connectivity:        Connectivity(st.connectivity),
		StorageDegraded:     st.storage_degraded != 0,
		PendingAtOpen:       uint64(st.pending_at_open),
		DeadLetteredTotal:   uint64(st.dead_lettered_total),
		RejectedTotal:       uint64(st.rejected_total),
		SentBytesTotal:      uint64(st.sent_bytes_total),
		BudgetLeftBytes:     uint64(st.budget_left_bytes),
	}
}
