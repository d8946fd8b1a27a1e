package edgebuf

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// receiver is a real HTTP endpoint on 127.0.0.1 that records every envelope it acknowledges.
type receiver struct {
	srv      *httptest.Server
	status   atomic.Int32 // the status answered; 200 unless a test sets an outage
	requests atomic.Int32

	mu   sync.Mutex
	ids  map[string]int             // id -> times received
	data map[string]json.RawMessage // id -> logged bytes
}

type envelope struct {
	ID     string          `json:"id"`
	Seq    uint64          `json:"seq"`
	TsMs   int64           `json:"ts_ms"`
	Source string          `json:"source"`
	Data   json.RawMessage `json:"data"`
}

func newReceiver(t testing.TB) *receiver {
	t.Helper()
	r := &receiver{ids: map[string]int{}, data: map[string]json.RawMessage{}}
	r.status.Store(200)
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.requests.Add(1)
		body, err := io.ReadAll(req.Body)
		if err != nil {
			w.WriteHeader(500)
			return
		}
		code := int(r.status.Load())
		if code/100 == 2 {
			var batch []envelope
			if err := json.Unmarshal(body, &batch); err != nil {
				t.Errorf("receiver: bad batch: %v", err)
				w.WriteHeader(400)
				return
			}
			r.mu.Lock()
			for _, e := range batch {
				r.ids[e.ID]++
				r.data[e.ID] = e.Data
			}
			r.mu.Unlock()
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) received() (ids map[string]int, data map[string]json.RawMessage) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids = make(map[string]int, len(r.ids))
	data = make(map[string]json.RawMessage, len(r.data))
	for k, v := range r.ids {
		ids[k] = v
	}
	for k, v := range r.data {
		data[k] = v
	}
	return ids, data
}

func testConfig(t *testing.T, endpoint string) Config {
	return Config{
		"path":               filepath.Join(t.TempDir(), "buffer.db"),
		"endpoint":           endpoint,
		"source.id":          "go-test",
		"commit.interval_ms": "20",
		"batch.linger_ms":    "10",
		"batch.max_records":  "100",
		"retry.initial_ms":   "50",
		"retry.max_ms":       "200",
		"http.timeout_ms":    "5000",
		"http.proxy":         "none",
	}
}

func mustOpen(t *testing.T, cfg Config) *Buffer {
	t.Helper()
	b, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return b
}

func TestDeliversFromManyGoroutines(t *testing.T) {
	rcv := newReceiver(t)
	b := mustOpen(t, testConfig(t, rcv.srv.URL))
	const goroutines, each = 4, 250
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				var err error
				if i%2 == 0 {
					err = b.LogJSON(map[string]int{"g": g, "i": i})
				} else {
					err = b.Log([]byte(fmt.Sprintf(`{"g":%d,"i":%d}`, g, i)))
				}
				if err != nil {
					t.Errorf("log g=%d i=%d: %v", g, i, err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	if err := b.Flush(30 * time.Second); err != nil {
		t.Fatalf("Flush: %v", err)
	}

	ids, data := rcv.received()
	if len(ids) != goroutines*each {
		t.Fatalf("receiver got %d distinct ids, want %d", len(ids), goroutines*each)
	}
	seen := map[[2]int]bool{}
	for id, d := range data {
		var rec struct{ G, I int }
		if err := json.Unmarshal(d, &rec); err != nil {
			t.Fatalf("id %s: data %q: %v", id, d, err)
		}
		seen[[2]int{rec.G, rec.I}] = true
	}
	for g := 0; g < goroutines; g++ {
		for i := 0; i < each; i++ {
			if !seen[[2]int{g, i}] {
				t.Errorf("record g=%d i=%d never arrived", g, i)
			}
		}
	}

	st, err := b.Status()
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if st.LoggedTotal != 1000 || st.DeliveredTotal != 1000 || st.PendingRecords != 0 {
		t.Errorf("status = %+v, want logged=delivered=1000 pending=0", st)
	}
	if st.Connectivity != ConnectivityOnline || st.LastHTTPStatus != 200 || st.LastSuccessUnixMs <= 0 {
		t.Errorf("status = %+v, want online, last status 200, a last success", st)
	}
	if st.PendingRecords != st.PendingAtOpen+st.LoggedTotal-st.DeliveredTotal-st.DroppedTotal-st.DeadLetteredTotal {
		t.Errorf("status invariant broken: %+v", st)
	}
	if st.DiskBytes == 0 {
		t.Errorf("DiskBytes = 0")
	}

	js, err := b.StatusJSON()
	if err != nil {
		t.Fatalf("StatusJSON: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(js, &m); err != nil {
		t.Fatalf("StatusJSON %q: %v", js, err)
	}
	if m["delivered_total"] != float64(1000) || m["connectivity"] != "online" {
		t.Errorf("StatusJSON = %s", js)
	}
	statusJSONInitialSize = 8 // BUFFER_TOO_SMALL, then the size the library asks for
	js2, err := b.StatusJSON()
	statusJSONInitialSize = 1024
	if err != nil || !json.Valid(js2) || len(js2) < 100 {
		t.Errorf("StatusJSON with a small first buffer = %q, %v", js2, err)
	}

	if err := b.Close(5 * time.Second); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := b.Close(time.Second); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v, want ErrClosed", err)
	}
	if err := b.Log([]byte(`{}`)); !errors.Is(err, ErrClosed) {
		t.Errorf("Log after Close = %v, want ErrClosed", err)
	}
	if _, err := b.Status(); !errors.Is(err, ErrClosed) {
		t.Errorf("Status after Close = %v, want ErrClosed", err)
	}
}

func TestInvalidRecord(t *testing.T) {
	rcv := newReceiver(t)
	b := mustOpen(t, testConfig(t, rcv.srv.URL))
	defer b.Close(time.Second)

	err := b.Log([]byte(`{"unterminated": `))
	if !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("Log(bad JSON) = %v, want ErrInvalidRecord", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.Code != 3 || e.Name != "EDGEBUF_ERR_INVALID_RECORD" || e.Message == "" {
		t.Errorf("error = %#v", e)
	}
	if errors.Is(err, ErrFull) {
		t.Errorf("an INVALID_RECORD error matches ErrFull")
	}
	for _, bad := range [][]byte{nil, {}, []byte(`1 2`), []byte("\xff")} {
		if err := b.Log(bad); !errors.Is(err, ErrInvalidRecord) {
			t.Errorf("Log(%q) = %v, want ErrInvalidRecord", bad, err)
		}
	}
	if err := b.LogJSON(make(chan int)); !errors.Is(err, ErrInvalidRecord) {
		t.Errorf("LogJSON(chan) = %v, want ErrInvalidRecord", err)
	}
	if err := b.Log([]byte(" [1, 2.50, {\"k\": null}] \n")); err != nil {
		t.Errorf("Log(valid with whitespace) = %v", err)
	}
	st, err := b.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.LoggedTotal != 1 {
		t.Errorf("LoggedTotal = %d, want 1 (bad records are not stored)", st.LoggedTotal)
	}
}

func TestInvalidConfig(t *testing.T) {
	cfg := testConfig(t, "http://127.0.0.1:9/")
	cfg["no.such.key"] = "1"
	_, err := Open(cfg)
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "no.such.key") {
		t.Errorf("unknown key: %v", err)
	}

	cfg = testConfig(t, "http://127.0.0.1:9/")
	cfg["commit.interval_ms"] = "soon"
	if _, err := Open(cfg); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("bad value: %v", err)
	}

	cfg = testConfig(t, "http://127.0.0.1:9/")
	cfg["http.header.X-Api-Key"] = "abc\x00def"
	if _, err := Open(cfg); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("NUL in a value: %v", err)
	}

	cfg = testConfig(t, "http://127.0.0.1:9/")
	delete(cfg, "endpoint")
	if _, err := Open(cfg); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("missing endpoint: %v", err)
	}
}

func TestOptionsFromEnv(t *testing.T) {
	rcv := newReceiver(t)
	cfg := testConfig(t, "http://127.0.0.1:9/never-used")
	t.Setenv("EDGEBUF_ENDPOINT", rcv.srv.URL) // the environment overrides Config
	b, err := OpenOptions(Options{Config: cfg, FromEnv: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(time.Second)
	if err := b.Log([]byte(`{"env":true}`)); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(10 * time.Second); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if ids, _ := rcv.received(); len(ids) != 1 {
		t.Errorf("receiver got %d records, want 1", len(ids))
	}
	t.Setenv("EDGEBUF_COMMIT_INTERVAL_MS", "soon")
	if _, err := OpenOptions(Options{Config: testConfig(t, rcv.srv.URL), FromEnv: true}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("bad environment variable: %v", err)
	}
}

func TestSecondOpenIsLocked(t *testing.T) {
	rcv := newReceiver(t)
	cfg := testConfig(t, rcv.srv.URL)
	b := mustOpen(t, cfg)
	_, err := Open(cfg)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	if err := b.Close(time.Second); err != nil {
		t.Fatalf("Close: %v", err)
	}
	b2, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	b2.Close(time.Second)
}

type eventLog struct {
	mu     sync.Mutex
	events []Event
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

func (l *eventLog) snapshot() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Event(nil), l.events...)
}

func (l *eventLog) count(kind EventKind) (n int, records uint64) {
	for _, e := range l.snapshot() {
		if e.Kind == kind {
			n++
			records += e.Count
		}
	}
	return
}

func TestEventsDelivered(t *testing.T) {
	rcv := newReceiver(t)
	var evs eventLog
	var self atomic.Pointer[Buffer]
	var fromCallback atomic.Pointer[error]
	var statusInCallback atomic.Bool
	b, err := OpenWithEvents(testConfig(t, rcv.srv.URL), func(e Event) {
		evs.add(e)
		if bb := self.Load(); bb != nil {
			if _, err := bb.Status(); err == nil {
				statusInCallback.Store(true)
			}
			if e.Kind == EventDelivered && fromCallback.Load() == nil {
				err := bb.Close(0) // must be refused, and leave the Buffer open
				fromCallback.Store(&err)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	self.Store(b)
	for i := 0; i < 10; i++ {
		if err := b.LogJSON(map[string]int{"i": i}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Flush(10 * time.Second); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	// Wait for the callback's own checks before closing (Close stops Status from callbacks).
	for deadline := time.Now().Add(10 * time.Second); fromCallback.Load() == nil && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if err := b.Close(5 * time.Second); err != nil { // drains the event queue
		t.Fatalf("Close: %v", err)
	}
	if _, delivered := evs.count(EventDelivered); delivered != 10 {
		t.Errorf("DELIVERED events count %d records, want 10: %+v", delivered, evs.snapshot())
	}
	if n, _ := evs.count(EventOnline); n == 0 {
		t.Errorf("no ONLINE event: %+v", evs.snapshot())
	}
	firstOnline, firstDelivered := -1, -1
	for i, e := range evs.snapshot() {
		if e.Kind == EventOnline && firstOnline < 0 {
			firstOnline = i
		}
		if e.Kind == EventDelivered && firstDelivered < 0 {
			firstDelivered = i
			if e.HTTPStatus != 200 || e.Message == "" || e.Kind.String() != "DELIVERED" {
				t.Errorf("DELIVERED event = %+v", e)
			}
		}
	}
	if firstOnline < 0 || firstOnline > firstDelivered {
		t.Errorf("ONLINE does not come before the first DELIVERED: %+v", evs.snapshot())
	}
	if p := fromCallback.Load(); p == nil || !errors.Is(*p, ErrInvalidArgument) {
		t.Errorf("Close from the callback = %v, want ErrInvalidArgument", fmtErrPtr(p))
	}
	if !statusInCallback.Load() {
		t.Errorf("Status from the callback failed")
	}
}

func TestOutageRecovers(t *testing.T) {
	rcv := newReceiver(t)
	rcv.status.Store(503)
	var evs eventLog
	b, err := OpenWithEvents(testConfig(t, rcv.srv.URL), evs.add)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(time.Second)
	for i := 0; i < 20; i++ {
		if err := b.LogJSON(map[string]int{"i": i}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Flush(400 * time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Flush during the outage = %v, want ErrTimeout", err)
	}
	st, err := b.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.FailedAttemptsTotal == 0 || st.LastHTTPStatus != 503 || st.PendingRecords != 20 ||
		st.Connectivity != ConnectivityOffline || st.DeliveredTotal != 0 {
		t.Errorf("status during the outage = %+v", st)
	}

	rcv.status.Store(200)
	if err := b.RetryNow(); err != nil {
		t.Fatalf("RetryNow: %v", err)
	}
	if err := b.Flush(10 * time.Second); err != nil {
		t.Fatalf("Flush after the outage: %v", err)
	}
	st, _ = b.Status()
	if st.DeliveredTotal != 20 || st.PendingRecords != 0 || st.Connectivity != ConnectivityOnline ||
		st.ConsecutiveFailures != 0 {
		t.Errorf("status after the outage = %+v", st)
	}
	ids, _ := rcv.received()
	if len(ids) != 20 {
		t.Errorf("receiver got %d ids, want 20", len(ids))
	}
	for id, n := range ids {
		if n != 1 {
			t.Errorf("id %s acknowledged %d times", id, n)
		}
	}
	if err := b.Close(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if n, _ := evs.count(EventOffline); n == 0 {
		t.Errorf("no OFFLINE event: %+v", evs.snapshot())
	}
	if n, _ := evs.count(EventOnline); n == 0 {
		t.Errorf("no ONLINE event: %+v", evs.snapshot())
	}
}

func TestCloseTimesOutAndKeepsRecords(t *testing.T) {
	rcv := newReceiver(t)
	rcv.status.Store(503)
	cfg := testConfig(t, rcv.srv.URL)
	b := mustOpen(t, cfg)
	for i := 0; i < 5; i++ {
		if err := b.LogJSON(i); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Sync(5 * time.Second); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	start := time.Now()
	if err := b.Close(200 * time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Close during an outage = %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close took %v", d)
	}
	rcv.status.Store(200)
	b = mustOpen(t, cfg)
	defer b.Close(time.Second)
	st, _ := b.Status()
	if st.PendingAtOpen != 5 {
		t.Errorf("PendingAtOpen = %d, want 5", st.PendingAtOpen)
	}
	if err := b.Flush(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if ids, _ := rcv.received(); len(ids) != 5 {
		t.Errorf("receiver got %d ids after reopen, want 5", len(ids))
	}
}

func TestConcurrentCallsAndClose(t *testing.T) {
	rcv := newReceiver(t)
	b := mustOpen(t, testConfig(t, rcv.srv.URL))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				err := b.Log([]byte(`{"x":1}`))
				if err == nil {
					_, err = b.Status()
				}
				if err == nil {
					err = b.Flush(time.Millisecond)
				}
				if err != nil && !errors.Is(err, ErrClosed) && !errors.Is(err, ErrTimeout) {
					t.Errorf("concurrent call: %v", err)
					return
				}
				if errors.Is(err, ErrClosed) {
					return
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	err := b.Close(2 * time.Second)
	if err != nil && !errors.Is(err, ErrTimeout) {
		t.Errorf("Close: %v", err)
	}
	close(stop)
	wg.Wait()
}

func TestFinalizerClosesForgottenBuffer(t *testing.T) {
	rcv := newReceiver(t)
	cfg := testConfig(t, rcv.srv.URL)
	func() {
		b := mustOpen(t, cfg)
		if err := b.Log([]byte(`{"forgotten":true}`)); err != nil {
			t.Fatal(err)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		b, err := Open(cfg)
		if err == nil {
			b.Close(time.Second)
			return
		}
		if !errors.Is(err, ErrLocked) {
			t.Fatalf("reopen: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the finalizer never released the lock")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSentinelsMatchTheLibrary(t *testing.T) {
	all := []*Error{ErrInvalidArgument, ErrInvalidConfig, ErrInvalidRecord, ErrFull, ErrTimeout,
		ErrClosed, ErrStorage, ErrLocked, ErrCorrupt, ErrBufferTooSmall, ErrInternal}
	for _, s := range all {
		if got := resultName(s.Code); got != s.Name {
			t.Errorf("code %d: library name %q, binding %q", s.Code, got, s.Name)
		}
		if !errors.Is(fmt.Errorf("wrapped: %w", newError(s.Code, "m")), s) {
			t.Errorf("errors.Is through wrapping fails for %s", s.Name)
		}
	}
	if newError(42, "").Name != "EDGEBUF_UNKNOWN" {
		t.Errorf("unknown code name = %q", newError(42, "").Name)
	}
	if Version() == "" {
		t.Errorf("empty Version")
	}
}

func TestMillis(t *testing.T) {
	cases := map[time.Duration]uint32{
		-time.Second:               0,
		0:                          0,
		time.Microsecond:           1,
		time.Millisecond:           1,
		1500 * time.Microsecond:    2,
		time.Hour * 24 * 365 * 200: 1<<32 - 1,
	}
	for d, want := range cases {
		if got := uint32(millis(d)); got != want {
			t.Errorf("millis(%v) = %d, want %d", d, got, want)
		}
	}
}

func fmtErrPtr(p *error) string {
	if p == nil {
		return "never called"
	}
	return fmt.Sprint(*p)
}

func BenchmarkLog(b *testing.B) {
	rcv := newReceiver(b)
	cfg := Config{
		"path":       filepath.Join(b.TempDir(), "bench.db"),
		"endpoint":   rcv.srv.URL,
		"http.proxy": "none",
	}
	buf, err := Open(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer buf.Close(0)
	rec := []byte(`{"model":"resnet18","class":3,"score":0.92}`)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := buf.Log(rec); err != nil && !errors.Is(err, ErrFull) {
				b.Error(err)
				return
			}
		}
	})
}
