// Command onnxloop is an ONNX Runtime inference loop in Go that logs every prediction through
// edgebuf (the Go binding in ../bindings/go).
//
// A small classifier (16 sensor inputs -> 32 hidden, ReLU -> 4 classes, softmax; the ONNX file
// is written by make_model.py) runs with github.com/yalue/onnxruntime_go on synthetic sensor
// readings. Each prediction becomes one JSON record (model, version, n, input hash, scores,
// argmax, inference latency in µs) handed to edgebuf, which stores it in SQLite and delivers it
// by HTTP in the background; the envelope id edgebuf assigns is what a receiver dedupes on.
//
//	onnxloop -ort-lib LIBONNXRUNTIME.so -model MODEL.onnx -endpoint URL -path FILE
//	         [-count N] [-rate PER_S] [-mode none|edgebuf|http] [-logged FILE] [-source ID]
//	         [-set KEY=VALUE ...]
//	onnxloop -bench -ort-lib ... -model ... -endpoint URL -path FILE [-count N]
//
// -mode none runs the model and logs nothing; edgebuf (default) logs through edgebuf (async,
// the default configuration: path, endpoint and source.id, plus any -set key=value); http POSTs
// each prediction synchronously with net/http as a one-envelope batch in edgebuf's wire format
// (SPEC section 3). A status line is printed about once a second and "summary: key=value ..."
// at the end. -logged writes every record edgebuf accepted (the bytes logged, one line each;
// they hold n and the scores) so a test can compare what arrived.
//
// -bench runs -count predictions as fast as possible in each of none, edgebuf and http
// (interleaved in 10 blocks, so a background load weighs on each alike), then none and edgebuf
// paced at -bench-rate, then edgebuf with an endpoint that refuses connections and with one
// that accepts them and never answers, and prints a table and edgebuf's cost as a share of the
// loop time. Its buffer files are -path with a suffix, removed afterwards.
//
// Exit status: 0 when every record was accepted and settled (the flush returned in time).
package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	edgebuf "github.com/edgebuf/edgebuf/bindings/go"
	ort "github.com/yalue/onnxruntime_go"
)

const (
	modelName    = "sensor-mlp"
	modelVersion = "1.0.0"
	nIn, nOut    = 16, 4
	seed         = 20240808
)

var stop atomic.Bool // SIGINT/SIGTERM: end the loop early, then flush and close as usual

// --- the model -----------------------------------------------------------------------------

type model struct {
	sess    *ort.AdvancedSession
	in, out *ort.Tensor[float32]
}

func loadModel(path string) (*model, error) {
	opts, err := ort.NewSessionOptions()
	if err != nil {
		return nil, err
	}
	defer opts.Destroy()
	// One thread, no spinning: the default pool spins on every core between runs, which on a
	// small device takes the CPU edgebuf's writer and sender threads need.
	if err := opts.SetIntraOpNumThreads(1); err != nil {
		return nil, err
	}
	if err := opts.SetInterOpNumThreads(1); err != nil {
		return nil, err
	}
	if err := opts.AddSessionConfigEntry("session.intra_op.allow_spinning", "0"); err != nil {
		return nil, err
	}
	in, err := ort.NewEmptyTensor[float32](ort.NewShape(1, nIn))
	if err != nil {
		return nil, err
	}
	out, err := ort.NewEmptyTensor[float32](ort.NewShape(1, nOut))
	if err != nil {
		in.Destroy()
		return nil, err
	}
	sess, err := ort.NewAdvancedSession(path, []string{"x"}, []string{"probs"},
		[]ort.Value{in}, []ort.Value{out}, opts)
	if err != nil {
		in.Destroy()
		out.Destroy()
		return nil, err
	}
	return &model{sess: sess, in: in, out: out}, nil
}

// infer runs the model on x; the scores it returns are valid until the next call.
func (m *model) infer(x []float32) ([]float32, error) {
	copy(m.in.GetData(), x)
	if err := m.sess.Run(); err != nil {
		return nil, err
	}
	return m.out.GetData(), nil
}

func (m *model) destroy() {
	m.sess.Destroy()
	m.in.Destroy()
	m.out.Destroy()
}

// sensors gives synthetic readings: four regimes (centroids) plus noise, the same sequence on
// every run.
type sensors struct {
	rng       *mrand.Rand
	centroids [nOut][nIn]float32
	x         [nIn]float32
}

func newSensors() *sensors {
	s := &sensors{rng: mrand.New(mrand.NewPCG(seed, 1))}
	for k := range s.centroids {
		for j := range s.centroids[k] {
			s.centroids[k][j] = float32(s.rng.NormFloat64())
		}
	}
	return s
}

func (s *sensors) next() []float32 {
	c := &s.centroids[s.rng.IntN(nOut)]
	for j := range s.x {
		s.x[j] = c[j] + float32(0.6*s.rng.NormFloat64())
	}
	return s.x[:]
}

// --- records -------------------------------------------------------------------------------

// recorder builds the JSON record of a prediction into a reused buffer (no allocation):
// {"model":...,"version":...,"n":N,"input_hash":"<32 hex>","scores":[...],"argmax":K,"latency_us":L}
type recorder struct {
	buf []byte
	raw [nIn * 4]byte
}

func (r *recorder) build(n uint64, x, scores []float32, argmax int, latencyUs int64) []byte {
	for j, v := range x {
		binary.LittleEndian.PutUint32(r.raw[4*j:], math.Float32bits(v))
	}
	sum := sha256.Sum256(r.raw[:])
	b := r.buf[:0]
	b = append(b, `{"model":"`+modelName+`","version":"`+modelVersion+`","n":`...)
	b = strconv.AppendUint(b, n, 10)
	b = append(b, `,"input_hash":"`...)
	b = hex.AppendEncode(b, sum[:16])
	b = append(b, `","scores":[`...)
	for k, s := range scores {
		if k > 0 {
			b = append(b, ',')
		}
		// The shortest decimal that reads back as the same float32.
		b = strconv.AppendFloat(b, float64(s), 'g', -1, 32)
	}
	b = append(b, `],"argmax":`...)
	b = strconv.AppendInt(b, int64(argmax), 10)
	b = append(b, `,"latency_us":`...)
	b = strconv.AppendInt(b, latencyUs, 10)
	b = append(b, '}')
	r.buf = b
	return b
}

func argmax(v []float32) int {
	k := 0
	for i := range v {
		if v[i] > v[k] {
			k = i
		}
	}
	return k
}

// --- sinks ---------------------------------------------------------------------------------

// offlineTracker is fed by edgebuf's events (on a library thread): is the endpoint offline
// now, and the longest offline period seen.
type offlineTracker struct {
	offline atomic.Bool
	mu      sync.Mutex
	since   time.Time
	longest time.Duration
}

func (o *offlineTracker) onEvent(ev edgebuf.Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch ev.Kind {
	case edgebuf.EventOffline:
		if !o.offline.Load() {
			o.since = time.Now()
			o.offline.Store(true)
		}
	case edgebuf.EventOnline:
		if o.offline.Load() {
			o.longest = max(o.longest, time.Since(o.since))
			o.offline.Store(false)
		}
	}
}

func (o *offlineTracker) longestOffline() time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.offline.Load() {
		return max(o.longest, time.Since(o.since))
	}
	return o.longest
}

// httpPoster POSTs one prediction per request, synchronously (net/http, keep-alive), as a
// one-envelope batch of edgebuf's wire format. It has no buffer and no retry: a failed POST
// loses the prediction.
type httpPoster struct {
	endpoint, source, instance string
	client                     *http.Client
	body                       bytes.Buffer
	sent, errors               int
}

func newHTTPPoster(endpoint, source string) *httpPoster {
	var inst [8]byte
	_, _ = rand.Read(inst[:])
	return &httpPoster{
		endpoint: endpoint,
		source:   source,
		instance: hex.EncodeToString(inst[:]),
		client: &http.Client{
			Timeout:   5 * time.Second,
			Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: 2},
		},
	}
}

func (p *httpPoster) post(record []byte, n uint64) {
	seq := strconv.FormatUint(n, 10)
	b := &p.body
	b.Reset()
	b.WriteString(`[{"id":"` + p.instance + "-" + seq + `","seq":` + seq + `,"ts_ms":`)
	b.WriteString(strconv.FormatInt(time.Now().UnixMilli(), 10))
	b.WriteString(`,"source":` + strconv.Quote(p.source) + `,"data":`)
	b.Write(record)
	b.WriteString("}]")
	req, err := http.NewRequest(http.MethodPost, p.endpoint, bytes.NewReader(b.Bytes()))
	if err != nil {
		p.errors++
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", p.instance+"-"+seq+"-"+seq+"-1")
	req.Header.Set("X-Edgebuf-Source", p.source)
	req.Header.Set("User-Agent", "onnxloop-http/1")
	resp, err := p.client.Do(req)
	if err != nil {
		p.errors++
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		p.errors++
		return
	}
	p.sent++
}

// --- the loop ------------------------------------------------------------------------------

type loop struct {
	m        *model
	mode     string
	buf      *edgebuf.Buffer
	conn     *offlineTracker
	poster   *httpPoster
	logged   *bufio.Writer // edgebuf mode: every accepted record, one line each
	quiet    bool
	statusEv time.Duration

	sensors     *sensors
	rec         recorder
	n           uint64
	logErrors   int
	peakBacklog uint64
}

func newLoop(m *model, mode string) *loop {
	return &loop{m: m, mode: mode, sensors: newSensors(), statusEv: time.Second}
}

type result struct {
	iters          int
	wall           time.Duration
	iter, rec, log []time.Duration // per iteration: all of it; building the record; the log call
	offlineIters   int
	worstOffline   time.Duration
}

func (l *loop) statusLine(elapsed time.Duration) {
	var line string
	switch {
	case l.buf != nil:
		st, err := l.buf.Status()
		if err != nil {
			line = "status: " + err.Error()
			break
		}
		l.peakBacklog = max(l.peakBacklog, st.PendingRecords)
		c := st.Connectivity.String()
		if st.Connectivity == edgebuf.ConnectivityOffline {
			c = "OFFLINE"
		}
		line = fmt.Sprintf("[%5.1fs] logged=%d pending=%d delivered=%d failed_attempts=%d connectivity=%s",
			elapsed.Seconds(), st.LoggedTotal, st.PendingRecords, st.DeliveredTotal,
			st.FailedAttemptsTotal, c)
		if st.NextRetryInMs > 0 {
			line += fmt.Sprintf(" next_retry_in=%dms", st.NextRetryInMs)
		}
	case l.poster != nil:
		line = fmt.Sprintf("[%5.1fs] predictions=%d posted=%d post_errors=%d",
			elapsed.Seconds(), l.n, l.poster.sent, l.poster.errors)
	default:
		line = fmt.Sprintf("[%5.1fs] predictions=%d", elapsed.Seconds(), l.n)
	}
	if !l.quiet {
		fmt.Println(line)
	}
}

// run does count iterations (rate > 0: paced at rate per second): read the sensors, infer,
// and (by mode) build a record and log it.
func (l *loop) run(count int, rate float64) (result, error) {
	res := result{
		iter: make([]time.Duration, 0, count),
		rec:  make([]time.Duration, 0, count),
		log:  make([]time.Duration, 0, count),
	}
	var period time.Duration
	if rate > 0 {
		period = time.Duration(float64(time.Second) / rate)
	}
	start := time.Now()
	nextStatus := start.Add(l.statusEv)
	for i := 0; i < count && !stop.Load(); i++ {
		if period > 0 {
			if d := time.Until(start.Add(time.Duration(i) * period)); d > 0 {
				time.Sleep(d)
			}
		}
		x := l.sensors.next()
		t0 := time.Now()
		scores, err := l.m.infer(x)
		if err != nil {
			return res, err
		}
		t1 := time.Now()
		var record []byte
		t2 := t1
		if l.mode != "none" {
			l.n++
			record = l.rec.build(l.n, x, scores, argmax(scores), t1.Sub(t0).Microseconds())
			t2 = time.Now()
			if l.buf != nil {
				if err := l.buf.Log(record); err != nil {
					l.logErrors++
					if l.logErrors <= 5 {
						log.Printf("log %d: %v", l.n, err)
					}
					record = nil
				}
			} else if l.poster != nil {
				l.poster.post(record, l.n)
			}
		} else {
			l.n++
		}
		t3 := time.Now()
		res.iter = append(res.iter, t3.Sub(t0))
		res.rec = append(res.rec, t2.Sub(t1))
		res.log = append(res.log, t3.Sub(t2))
		if l.conn != nil && l.conn.offline.Load() {
			res.offlineIters++
			res.worstOffline = max(res.worstOffline, t3.Sub(t0))
		}
		if l.logged != nil && record != nil {
			l.logged.Write(record)
			l.logged.WriteByte('\n')
		}
		res.iters++
		if t3.After(nextStatus) {
			nextStatus = t3.Add(l.statusEv)
			l.statusLine(t3.Sub(start))
		}
	}
	res.wall = time.Since(start)
	return res, nil
}

func merge(parts []result) result {
	var r result
	for _, p := range parts {
		r.iters += p.iters
		r.wall += p.wall
		r.iter = append(r.iter, p.iter...)
		r.rec = append(r.rec, p.rec...)
		r.log = append(r.log, p.log...)
		r.offlineIters += p.offlineIters
		r.worstOffline = max(r.worstOffline, p.worstOffline)
	}
	return r
}

type stats struct {
	n                   int
	mean, p50, p99, max float64 // µs
}

func statsOf(d []time.Duration) stats {
	if len(d) == 0 {
		return stats{}
	}
	s := slices.Clone(d)
	slices.Sort(s)
	var sum time.Duration
	for _, v := range s {
		sum += v
	}
	us := func(v time.Duration) float64 { return float64(v) / 1e3 }
	q := func(p float64) float64 { return us(s[min(len(s)-1, int(p*float64(len(s))))]) }
	return stats{n: len(s), mean: us(sum) / float64(len(s)), p50: q(0.50), p99: q(0.99), max: us(s[len(s)-1])}
}

// --- one run -------------------------------------------------------------------------------

type options struct {
	endpoint, path, mode, logged, source string
	count                                int
	rate                                 float64
	flushTimeout                         time.Duration
	quiet                                bool
	benchRate                            float64
	benchPaced                           int
	set                                  map[string]string // -set key=value: more edgebuf keys
}

func runOnce(o options, m *model) int {
	l := newLoop(m, o.mode)
	l.quiet = o.quiet
	switch o.mode {
	case "edgebuf":
		l.conn = &offlineTracker{}
		cfg := edgebuf.Config{"path": o.path, "endpoint": o.endpoint, "source.id": o.source}
		for k, v := range o.set {
			cfg[k] = v
		}
		buf, err := edgebuf.OpenWithEvents(cfg, l.conn.onEvent)
		if err != nil {
			log.Printf("edgebuf: %v", err)
			return 1
		}
		l.buf = buf
	case "http":
		l.poster = newHTTPPoster(o.endpoint, o.source)
	}
	var loggedFile *os.File
	if o.logged != "" && o.mode == "edgebuf" {
		f, err := os.Create(o.logged)
		if err != nil {
			log.Print(err)
			return 1
		}
		loggedFile = f
		l.logged = bufio.NewWriterSize(f, 1<<16)
	}
	paced := "full speed"
	if o.rate > 0 {
		paced = fmt.Sprintf("%g/s", o.rate)
	}
	fmt.Printf("onnxloop: model %s %s (16-32-4 MLP, onnxruntime %s), mode %s, %d predictions at %s\n",
		modelName, modelVersion, ort.GetVersion(), o.mode, o.count, paced)

	res, err := l.run(o.count, o.rate)
	ok := err == nil && (res.iters == o.count || stop.Load())
	if err != nil {
		log.Printf("inference: %v", err)
	}
	if l.logged != nil {
		if err := l.logged.Flush(); err != nil {
			log.Print(err)
			ok = false
		}
		loggedFile.Close()
	}
	it, rc, lg := statsOf(res.iter), statsOf(res.rec), statsOf(res.log)
	f := []string{
		"mode=" + o.mode,
		fmt.Sprintf("predictions=%d", res.iters),
		fmt.Sprintf("iter_p50_us=%.1f iter_p99_us=%.1f iter_max_us=%.0f", it.p50, it.p99, it.max),
	}
	if o.mode != "none" {
		f = append(f, fmt.Sprintf("record_p50_us=%.1f log_p50_us=%.1f log_p99_us=%.1f log_max_us=%.0f",
			rc.p50, lg.p50, lg.p99, lg.max))
		spent := rc.mean + lg.mean
		f = append(f, fmt.Sprintf("logging_pct_of_iter=%.1f", 100*spent/it.mean))
		if o.rate > 0 {
			f = append(f, fmt.Sprintf("logging_pct_of_period=%.3f", spent*o.rate/1e4))
		}
	}
	switch {
	case l.buf != nil:
		flush := "ok"
		t := time.Now()
		if err := l.buf.Flush(o.flushTimeout); err != nil {
			flush, ok = "timeout", false
			if !errors.Is(err, edgebuf.ErrTimeout) {
				flush = "error"
				log.Printf("flush: %v", err)
			}
		}
		flushS := time.Since(t).Seconds()
		st, err := l.buf.Status()
		if err != nil {
			log.Printf("status: %v", err)
			ok = false
		}
		l.peakBacklog = max(l.peakBacklog, st.PendingRecords)
		closed := "ok"
		if err := l.buf.Close(5 * time.Second); err != nil {
			closed = "pending"
		}
		f = append(f,
			fmt.Sprintf("logged=%d delivered=%d pending=%d dropped=%d dead_lettered=%d",
				st.LoggedTotal, st.DeliveredTotal, st.PendingRecords, st.DroppedTotal, st.DeadLetteredTotal),
			fmt.Sprintf("failed_attempts=%d peak_backlog=%d longest_offline_s=%.1f",
				st.FailedAttemptsTotal, l.peakBacklog, l.conn.longestOffline().Seconds()),
			fmt.Sprintf("offline_iters=%d worst_offline_iter_us=%d", res.offlineIters, res.worstOffline.Microseconds()),
			fmt.Sprintf("log_errors=%d flush=%s flush_s=%.2f close=%s", l.logErrors, flush, flushS, closed))
		ok = ok && l.logErrors == 0 && st.PendingRecords == 0
	case l.poster != nil:
		f = append(f, fmt.Sprintf("posted=%d post_errors=%d", l.poster.sent, l.poster.errors))
		ok = ok && l.poster.errors == 0
	}
	fmt.Println("summary: " + strings.Join(f, " "))
	if !ok {
		return 1
	}
	return 0
}

// --- the benchmark -------------------------------------------------------------------------

func removeBuffer(path string) {
	for _, s := range []string{"", "-wal", "-shm", ".lock", "-journal"} {
		os.Remove(path + s)
	}
}

type arm struct {
	label string
	l     *loop
	parts []result
	note  string
}

func bench(o options, m *model) int {
	const rounds, warmup = 10, 200
	block := max(1, o.count/rounds)
	source := o.source + "-bench"
	var paths []string
	defer func() {
		for _, p := range paths {
			removeBuffer(p)
		}
	}()
	newArm := func(label, mode, endpoint string) (*arm, error) {
		a := &arm{label: label, l: newLoop(m, mode)}
		a.l.quiet, a.l.statusEv = true, time.Hour
		switch mode {
		case "edgebuf":
			p := o.path + ".bench-" + strings.NewReplacer("/", "-", "@", "-").Replace(label) + ".db"
			removeBuffer(p)
			paths = append(paths, p)
			a.l.conn = &offlineTracker{}
			// The default configuration (async): only what is required.
			buf, err := edgebuf.OpenWithEvents(edgebuf.Config{"path": p, "endpoint": endpoint,
				"source.id": source}, a.l.conn.onEvent)
			if err != nil {
				return nil, err
			}
			a.l.buf = buf
		case "http":
			a.l.poster = newHTTPPoster(endpoint, source)
		}
		return a, nil
	}
	runArm := func(a *arm, n int, rate float64) error {
		r, err := a.l.run(n, rate)
		a.parts = append(a.parts, r)
		return err
	}
	fail := func(err error) int { log.Printf("bench: %v", err); return 1 }

	fmt.Printf("bench: 16-32-4 MLP, onnxruntime %s (1 intra-op thread), edgebuf %s; %d predictions per mode "+
		"as fast as possible (%d interleaved blocks, after %d warm-up); endpoint %s\n",
		ort.GetVersion(), edgebuf.Version(), block*rounds, rounds, warmup, o.endpoint)

	none, err := newArm("none", "none", "")
	if err != nil {
		return fail(err)
	}
	eb, err := newArm("edgebuf", "edgebuf", o.endpoint)
	if err != nil {
		return fail(err)
	}
	hp, _ := newArm("http", "http", o.endpoint)
	arms := []*arm{none, eb, hp}
	for _, a := range arms {
		if _, err := a.l.run(warmup, 0); err != nil { // not measured
			return fail(err)
		}
	}
	_ = eb.l.buf.Flush(10 * time.Second)
	for r := 0; r < rounds; r++ {
		for _, a := range append(arms[r%3:], arms[:r%3]...) { // rotate the order
			if err := runArm(a, block, 0); err != nil {
				return fail(err)
			}
		}
	}
	t := time.Now()
	if err := eb.l.buf.Flush(o.flushTimeout); err != nil {
		eb.note = "flush: " + err.Error()
	} else {
		eb.note = fmt.Sprintf("all delivered %.2f s after the last block", time.Since(t).Seconds())
	}
	eb.l.buf.Close(5 * time.Second)
	hp.note = fmt.Sprintf("%d posted, %d errors", hp.l.poster.sent, hp.l.poster.errors)

	// The same at a steady rate: the loop sleeps between predictions, as a camera or sensor
	// loop does, and each iteration starts with cold caches.
	var paced []*arm
	if o.benchRate > 0 && o.benchPaced > 0 {
		tag := fmt.Sprintf("@%g/s", o.benchRate)
		pn, _ := newArm("none"+tag, "none", "")
		pe, err := newArm("edgebuf"+tag, "edgebuf", o.endpoint)
		if err != nil {
			return fail(err)
		}
		paced = []*arm{pn, pe}
		for _, a := range paced {
			a.l.run(warmup/4, o.benchRate)
		}
		_ = pe.l.buf.Flush(10 * time.Second)
		for r := 0; r < 4; r++ {
			for _, a := range append(paced[r%2:], paced[:r%2]...) {
				if err := runArm(a, o.benchPaced/4, o.benchRate); err != nil {
					return fail(err)
				}
			}
		}
		if err := pe.l.buf.Flush(o.flushTimeout); err != nil {
			pe.note = "flush: " + err.Error()
		}
		pe.l.buf.Close(5 * time.Second)
	}

	// An outage: edgebuf with an endpoint that refuses connections, and with one that accepts
	// them and never answers.
	outage := func(label, endpoint string) (*arm, error) {
		a, err := newArm(label, "edgebuf", endpoint)
		if err != nil {
			return nil, err
		}
		a.l.run(warmup, 0)
		if err := runArm(a, block*rounds, 0); err != nil {
			return nil, err
		}
		st, _ := a.l.buf.Status()
		t := time.Now()
		a.l.buf.Close(0)
		a.note = fmt.Sprintf("%d pending, %d failed attempts, connectivity %s; Close(0) took %.2f s",
			st.PendingRecords, st.FailedAttemptsTotal, st.Connectivity, time.Since(t).Seconds())
		return a, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	refused := "http://" + ln.Addr().String() + "/ingest"
	ln.Close() // nothing listens there now: connections are refused
	down, err := outage("edgebuf/down", refused)
	if err != nil {
		return fail(err)
	}
	hangLn, err := net.Listen("tcp", "127.0.0.1:0") // the kernel accepts; nobody answers
	if err != nil {
		return fail(err)
	}
	hang, err := outage("edgebuf/hang", "http://"+hangLn.Addr().String()+"/ingest")
	hangLn.Close()
	if err != nil {
		return fail(err)
	}

	all := append(append([]*arm{none, eb, hp}, paced...), down, hang)
	type row struct {
		label          string
		iters          int
		perS           float64
		it, rec, lg    stats
		note           string
		worstOfflineUs int64
		offlineIters   int
	}
	rows := make([]row, 0, len(all))
	for _, a := range all {
		r := merge(a.parts)
		var busy time.Duration
		for _, d := range r.iter {
			busy += d
		}
		rows = append(rows, row{label: a.label, iters: r.iters, perS: float64(r.iters) / busy.Seconds(),
			it: statsOf(r.iter), rec: statsOf(r.rec), lg: statsOf(r.log), note: a.note,
			worstOfflineUs: r.worstOffline.Microseconds(), offlineIters: r.offlineIters})
	}
	fmt.Println()
	hdr := fmt.Sprintf("%-16s %5s %7s | %7s %7s %7s | %6s | %6s %6s %7s", "mode", "iters", "pred/s",
		"p50", "p99", "max", "record", "log50", "log99", "logmax")
	fmt.Println(hdr)
	fmt.Println(strings.Repeat("-", len(hdr)))
	for _, r := range rows {
		fmt.Printf("%-16s %5d %7.0f | %7.1f %7.1f %7.0f | %6.2f | %6.2f %6.2f %7.0f\n", r.label, r.iters,
			r.perS, r.it.p50, r.it.p99, r.it.max, r.rec.p50, r.lg.p50, r.lg.p99, r.lg.max)
	}
	fmt.Println("µs per prediction. p50/p99/max: one whole iteration (inference + logging); pred/s from their sum.\n" +
		"record: building it (sha256 of the input, JSON by hand), p50. log50/99/max: Buffer.Log (edgebuf)\n" +
		"or the synchronous POST (http).")
	for _, r := range rows {
		if r.note != "" {
			fmt.Printf("  %-16s %s\n", r.label, r.note)
		}
	}
	fmt.Println()
	n, e, h := rows[0], rows[1], rows[2]
	cost := e.rec.mean + e.lg.mean
	fmt.Printf("loop without logging: %.1f µs per prediction (mean; p50 %.1f), %.0f predictions/s\n",
		n.it.mean, n.it.p50, n.perS)
	fmt.Printf("edgebuf: record %.2f + Log %.2f = %.2f µs per prediction (mean; p50 %.2f + %.2f) = %.1f %% of "+
		"that loop time; difference of the iteration means %+.2f µs, of the p50s %+.2f µs\n",
		e.rec.mean, e.lg.mean, cost, e.rec.p50, e.lg.p50, 100*cost/n.it.mean, e.it.mean-n.it.mean, e.it.p50-n.it.p50)
	goal := "met"
	if 100*cost/n.it.mean >= 1 {
		goal = "not met"
	}
	fmt.Printf("  goal < 1 %% of the loop time: %s by this %.1f µs model at full speed; met by any loop of %.0f µs "+
		"or more per prediction (100x edgebuf's cost)\n", goal, n.it.mean, 100*cost)
	if len(paced) == 2 {
		pn, pe := rows[3], rows[4]
		pc := pe.rec.mean + pe.lg.mean
		fmt.Printf("paced at %g/s: edgebuf %.2f µs per prediction = %.1f %% of the iteration (%.1f µs without "+
			"logging), %.3f %% of the %.0f µs period\n", o.benchRate, pc, 100*pc/pn.it.mean, pn.it.mean,
			pc*o.benchRate/1e4, 1e6/o.benchRate)
	}
	hc := h.rec.mean + h.lg.mean
	fmt.Printf("plain HTTP POST per prediction: %.1f µs per prediction (mean; p99 %.1f) = %.0f %% of that loop time, "+
		"%.1fx the loop without logging\n", hc, h.lg.p99, 100*hc/n.it.mean, h.it.mean/n.it.mean)
	d, g := rows[len(rows)-2], rows[len(rows)-1]
	fmt.Printf("worst iteration during an outage: %.0f µs (refused), %.0f µs (hanging); Log p99 %.2f / %.2f µs\n",
		d.it.max, g.it.max, d.lg.p99, g.lg.p99)
	return 0
}

// --- main ----------------------------------------------------------------------------------

func main() {
	log.SetFlags(0)
	log.SetPrefix("onnxloop: ")
	var o options
	flag.StringVar(&o.endpoint, "endpoint", "", "URL the records are POSTed to (edgebuf and http modes)")
	flag.StringVar(&o.path, "path", "onnxloop.db", "the edgebuf buffer file (SQLite)")
	flag.IntVar(&o.count, "count", 3000, "predictions to make (-bench: per mode)")
	flag.Float64Var(&o.rate, "rate", 500, "predictions per second; 0 = as fast as possible")
	ortLib := flag.String("ort-lib", os.Getenv("ONNXRUNTIME_LIB"), "path of libonnxruntime.so (default $ONNXRUNTIME_LIB)")
	modelPath := flag.String("model", "model.onnx", "the ONNX model (make_model.py writes it)")
	flag.StringVar(&o.mode, "mode", "edgebuf", "none, edgebuf or http")
	benchMode := flag.Bool("bench", false, "run none, edgebuf and http (and edgebuf during an outage) and print a table")
	flag.StringVar(&o.logged, "logged", "", "edgebuf mode: write every accepted record to this file, one line each")
	flag.StringVar(&o.source, "source", "onnx-loop-go", "source.id of the records")
	flag.DurationVar(&o.flushTimeout, "flush-timeout", 30*time.Second, "how long to wait for delivery at the end")
	flag.BoolVar(&o.quiet, "quiet", false, "no status lines")
	flag.Float64Var(&o.benchRate, "bench-rate", 1000, "-bench: the rate of the paced runs; 0 = none")
	flag.IntVar(&o.benchPaced, "bench-paced-count", 1000, "-bench: predictions per paced run")
	o.set = map[string]string{}
	flag.Func("set", "an edgebuf configuration key, key=value (repeatable; edgebuf mode), e.g. retry.max_ms=1000",
		func(kv string) error {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return errors.New("want key=value")
			}
			o.set[k] = v
			return nil
		})
	flag.Parse()
	if flag.NArg() > 0 {
		log.Fatalf("unexpected arguments: %v", flag.Args())
	}
	switch o.mode {
	case "none", "edgebuf", "http":
	default:
		log.Fatalf("-mode must be none, edgebuf or http, not %q", o.mode)
	}
	if o.endpoint == "" && (*benchMode || o.mode != "none") {
		log.Fatal("-endpoint is required")
	}
	if *ortLib == "" {
		log.Fatal("-ort-lib (or $ONNXRUNTIME_LIB) is required: the path of libonnxruntime.so")
	}

	ort.SetSharedLibraryPath(*ortLib)
	if err := ort.InitializeEnvironment(ort.WithLogLevelWarning()); err != nil {
		log.Fatalf("onnxruntime (%s): %v", *ortLib, err)
	}
	m, err := loadModel(*modelPath)
	if err != nil {
		ort.DestroyEnvironment()
		log.Fatalf("model %s: %v", *modelPath, err)
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() { <-sig; stop.Store(true) }()

	var code int
	if *benchMode {
		code = bench(o, m)
	} else {
		code = runOnce(o, m)
	}
	m.destroy()
	ort.DestroyEnvironment()
	os.Exit(code)
}
