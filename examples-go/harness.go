//go:build harness

// The measuring harness of the Go ONNX Runtime example (main.go, onnx.go): the example's
// session, records and status line (onnx.go) in a loop timed per iteration, with the test's
// flags, an outage run's summary and the cost tables. Build it with
// `go build -tags harness,edgebuf_repo` (harness leaves the example's main out); examples-go/run.sh does.
//
// Two models (examples-python/models.py writes both) run on one intra-op thread:
//
//   - sensor (default): sensor-mlp 1.0.0, a small classifier (16 sensor inputs -> 32 hidden,
//     ReLU -> 4 classes, softmax) on synthetic sensor readings; a few µs per inference.
//   - camera: camera-cnn 1.0.0, a small CNN (1x3x128x128 input; 3 x Conv 3x3 + Relu + MaxPool
//     2x2 with 24, 48, 96 channels; GlobalAveragePool; Gemm to 10 classes; softmax) on
//     synthetic 128x128 RGB uint8 frames (a pool of 16 made from a seeded RNG and cycled
//     through, each with a frame counter in its first 4 bytes), scaled to [-1, 1] float32;
//     about 2.5 ms per inference, like an edge vision model.
//
// Each prediction becomes one record of onnx.go's recorder, handed to edgebuf. Usage:
//
//	onnxloop-harness -ort-lib LIBONNXRUNTIME.so -models DIR -endpoint URL -path FILE
//	         [-model-kind sensor|camera] [-model FILE] [-count N] [-rate PER_S]
//	         [-mode none|edgebuf|http] [-logged FILE] [-source ID] [-set KEY=VALUE ...]
//	onnxloop-harness -bench -ort-lib ... -models DIR -endpoint URL -path FILE [-model-kind K]
//	         [-count N] [-camera-count N]
//
// -models is the directory models.py wrote sensor.onnx and camera.onnx to; -model names
// the file of the one -model-kind instead. -mode none runs the model and logs nothing;
// edgebuf (default) logs through edgebuf (async, the default configuration: path, endpoint and
// source.id, plus any -set key=value); http POSTs each prediction synchronously with net/http
// as a one-envelope batch in edgebuf's wire format (the README's wire format section). A status line is printed
// about once a second and "summary: key=value ..." at the end. -logged writes every record
// edgebuf accepted (the bytes logged, one line each; they hold n and the scores) so a test can
// compare what arrived.
//
// -bench measures both models (or the one -model-kind names), each in turn: predictions as
// fast as possible in each of none, edgebuf and http (interleaved in 10 blocks, so a
// background load weighs on each alike; -count per mode for the sensor model, -camera-count
// for the camera model), then none and edgebuf paced (-bench-rate, -camera-bench-rate), then
// edgebuf with an endpoint that refuses connections and with one that accepts them and never
// answers. Per model it prints a table and edgebuf's cost as a share of the loop time; last,
// the goal per model (edgebuf under 1 % of the loop's time; no stall with the endpoint down),
// met or NOT met. Its buffer files are -path with a suffix, removed afterwards.
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
	"path/filepath"
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
	nIn, nOut         = 16, 4 // the sensor model
	camH, camW        = 128, 128
	camClasses        = 10
	framePool         = 16
	seed       uint64 = 20240808
)

var stop atomic.Bool // SIGINT/SIGTERM: end the loop early, then flush and close as usual

// --- the models ----------------------------------------------------------------------------

// modelKind is one of -model-kind's choices: the ONNX model's shapes, its inputs, what the
// record names it, and its -bench defaults.
type modelKind struct {
	key, name, version, describe string
	inShape                      []int64
	nOut                         int
	hashed                       string // what input_hash is of
	newInput                     func() inputSource
	warmup                       int     // -bench: iterations per arm before measuring
	outageMinS                   float64 // -bench: the outage arms run at least this long
}

var kinds = []*modelKind{
	{
		key: "sensor", name: "sensor-mlp", version: "1.0.0", describe: "16-32-4 MLP",
		inShape: []int64{1, nIn}, nOut: nOut, hashed: "the 64-byte reading",
		newInput: func() inputSource { return newSensors() }, warmup: 200,
	},
	{
		key: "camera", name: "camera-cnn", version: "1.0.0",
		describe: fmt.Sprintf("%dx%d RGB CNN: 3x(Conv3x3+Relu+MaxPool) 24-48-96, GAP, Gemm->%d",
			camH, camW, camClasses),
		inShape: []int64{1, 3, camH, camW}, nOut: camClasses,
		hashed:   fmt.Sprintf("the %d KiB uint8 frame", camH*camW*3/1024),
		newInput: func() inputSource { return newFrames() }, warmup: 20,
		// Its 500 predictions take about 1.3 s: edgebuf commits and first sends after up
		// to commit.interval_ms (1 s), so a few attempts must fail within the outage arm.
		outageMinS: 3,
	},
}

func kindByKey(key string) *modelKind {
	for _, k := range kinds {
		if k.key == key {
			return k
		}
	}
	return nil
}

// kindModel is a loaded model (onnx.go) with what the harness knows of its kind.
type kindModel struct {
	*model
	kind *modelKind
}

func loadKind(path string, k *modelKind) (*kindModel, error) {
	m, err := loadModel(path, ort.NewShape(k.inShape...), ort.NewShape(1, int64(k.nOut)))
	if err != nil {
		return nil, err
	}
	return &kindModel{model: m, kind: k}, nil
}

// inputSource gives the model's inputs, the same sequence on every run.
type inputSource interface {
	// next writes the next input into x (the model's input tensor) and returns the bytes the
	// record's input_hash is of, valid until the next call. It runs before an iteration's
	// clock starts, as reading the sensors or capturing a frame does.
	next(x []float32) []byte
}

// sensors gives synthetic readings: four regimes (centroids) plus noise.
type sensors struct {
	rng       *mrand.Rand
	centroids [nOut][nIn]float32
	raw       [nIn * 4]byte // the reading as little-endian float32s
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

func (s *sensors) next(x []float32) []byte {
	c := &s.centroids[s.rng.IntN(nOut)]
	for j := range nIn {
		v := c[j] + float32(0.6*s.rng.NormFloat64())
		x[j] = v
		binary.LittleEndian.PutUint32(s.raw[4*j:], math.Float32bits(v))
	}
	return s.raw[:]
}

// frames gives synthetic camera frames, as a camera delivers them: 128x128 RGB, uint8, HWC
// (48 KiB). A pool of framePool frames (a coarse random colour field, upsampled 8x, plus pixel
// noise; as examples-python/models.py makes them, from Go's seeded RNG) is made once and
// cycled through; each frame gets a 32-bit frame counter (little-endian) in its first 4 bytes,
// so no two frames are equal. The model input is the frame scaled to [-1, 1], 1x3x128x128
// float32 CHW; input_hash is of the captured uint8 frame.
type frames struct {
	pool [framePool][]byte
	n    uint32
}

func newFrames() *frames {
	rng := mrand.New(mrand.NewPCG(seed+3, 1))
	const ch, cw = camH / 8, camW / 8
	f := &frames{}
	for k := range f.pool {
		var coarse [ch * cw * 3]int
		for i := range coarse {
			coarse[i] = rng.IntN(256)
		}
		img := make([]byte, camH*camW*3)
		for y := range camH {
			for x := range camW {
				for c := range 3 {
					v := coarse[((y/8)*cw+x/8)*3+c] + rng.IntN(49) - 24
					img[(y*camW+x)*3+c] = byte(min(255, max(0, v)))
				}
			}
		}
		f.pool[k] = img
	}
	return f
}

func (f *frames) next(x []float32) []byte {
	frame := f.pool[f.n%framePool]
	f.n++
	binary.LittleEndian.PutUint32(frame, f.n)
	const plane = camH * camW
	r, g, b := x[:plane], x[plane:2*plane], x[2*plane:3*plane]
	for i := range plane {
		p := frame[3*i : 3*i+3 : 3*i+3]
		r[i] = float32(p[0])*(1/127.5) - 1
		g[i] = float32(p[1])*(1/127.5) - 1
		b[i] = float32(p[2])*(1/127.5) - 1
	}
	return frame
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
	m        *kindModel
	mode     string
	buf      *edgebuf.Buffer
	conn     *offlineTracker
	poster   *httpPoster
	logged   *bufio.Writer // edgebuf mode: every accepted record, one line each
	quiet    bool
	statusEv time.Duration

	input       inputSource
	rec         recorder
	n           uint64
	logErrors   int
	peakBacklog uint64
}

func newLoop(m *kindModel, mode string) *loop {
	return &loop{m: m, mode: mode, input: m.kind.newInput(), rec: newRecorder(m.kind.name, m.kind.version), statusEv: time.Second}
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
		line = fmt.Sprintf("[%5.1fs] %s", elapsed.Seconds(), statusLine(st))
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

// run does count iterations (rate > 0: paced at rate per second): read the input (sensors or
// a camera frame), infer, and (by mode) build a record and log it.
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
		raw := l.input.next(l.m.in.GetData())
		t0 := time.Now()
		scores, err := l.m.infer()
		if err != nil {
			return res, err
		}
		t1 := time.Now()
		var record []byte
		t2 := t1
		if l.mode != "none" {
			l.n++
			record = l.rec.build(l.n, raw, scores, t1.Sub(t0).Microseconds())
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
	benchRate                            float64 // -bench, sensor model: the paced runs' rate
	benchPaced                           int     // and their predictions per mode
	cameraCount                          int     // -bench, camera model: -count
	cameraRate                           float64 // -bench-rate
	cameraPaced                          int     // -bench-paced-count
	stallMs                              int
	set                                  map[string]string // -set key=value: more edgebuf keys
}

func runOnce(o options, m *kindModel) int {
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
	k := m.kind
	fmt.Printf("onnxloop-harness: model %s %s (%s, onnxruntime %s), mode %s, %d predictions at %s\n",
		k.name, k.version, k.describe, ort.GetVersion(), o.mode, o.count, paced)

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
		"model=" + m.kind.name,
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

type row struct {
	label       string
	iters       int
	perS        float64
	it, rec, lg stats
	note        string
}

func rowOf(a *arm) row {
	r := merge(a.parts)
	var busy time.Duration
	for _, d := range r.iter {
		busy += d
	}
	return row{label: a.label, iters: r.iters, perS: float64(r.iters) / busy.Seconds(),
		it: statsOf(r.iter), rec: statsOf(r.rec), lg: statsOf(r.log), note: a.note}
}

func meanUs(d []time.Duration) float64 { return statsOf(d).mean }

// fmtPct is a percentage as printed: 2 decimals below 10, 1 below 1000, none above.
func fmtPct(x float64) string {
	switch {
	case math.Abs(x) < 10:
		return strconv.FormatFloat(x, 'f', 2, 64)
	case math.Abs(x) < 1000:
		return strconv.FormatFloat(x, 'f', 1, 64)
	}
	return strconv.FormatFloat(x, 'f', 0, 64)
}

// under1 tells whether a percentage is under 1 %, judged on the value as printed.
func under1(x float64) bool {
	v, _ := strconv.ParseFloat(fmtPct(x), 64)
	return v < 1
}

// fmtUs is a duration given in µs as printed: in µs below a millisecond, else in ms.
func fmtUs(us float64) string {
	if us < 1000 {
		return strconv.FormatFloat(us, 'f', 1, 64) + " µs"
	}
	return strconv.FormatFloat(us/1000, 'f', 2, 64) + " ms"
}

func metStr(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

// hashUs times sha256 of the bytes input_hash is of, apart from the loop (timing it inside
// would add two clock reads to every record): µs per hash.
func hashUs(k *modelKind) float64 {
	size := 1
	for _, d := range k.inShape {
		size *= int(d)
	}
	raw := k.newInput().next(make([]float32, size))
	var sink byte
	n, t := 0, time.Now()
	for n < 10 || time.Since(t) < 20*time.Millisecond {
		sum := sha256.Sum256(raw)
		sink ^= sum[0]
		n++
	}
	_ = sink
	return float64(time.Since(t).Microseconds()) / float64(n)
}

// benchOut is what the final goal lines need of one model's bench.
type benchOut struct {
	kind                         *modelKind
	base, rec, lg, d, dSE        float64 // µs, means: the loop without logging, edgebuf's parts, the difference
	paced                        bool
	pacedRate, pacedCost, pacedD float64
	stallUs, outP99, noneMax     float64
	noneP99                      float64
}

// benchModel runs one model: none / edgebuf / http interleaved in rounds blocks of
// count/rounds (so a background load on the machine weighs on every mode alike), then none and
// edgebuf paced at rate, then edgebuf against a refused and a hanging endpoint. Prints the
// table and its reading.
func benchModel(o options, m *kindModel, count int, rate float64, pacedCount int) (*benchOut, error) {
	const rounds, pacedRounds = 10, 5
	k := m.kind
	warmup := k.warmup
	block := max(1, count/rounds)
	source := o.source + "-bench"
	tModel := time.Now()
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
			p := o.path + ".bench-" + k.key + "-" + strings.NewReplacer("/", "-", "@", "-").Replace(label) + ".db"
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

	fmt.Printf("== bench, model %s %s: %s, onnxruntime %s (1 intra-op thread), edgebuf %s; %d predictions "+
		"per mode as fast as possible (%d interleaved blocks, after %d warm-up); endpoint %s\n",
		k.name, k.version, k.describe, ort.GetVersion(), edgebuf.Version(), block*rounds, rounds, warmup, o.endpoint)

	none, err := newArm("none", "none", "")
	if err != nil {
		return nil, err
	}
	eb, err := newArm("edgebuf", "edgebuf", o.endpoint)
	if err != nil {
		return nil, err
	}
	hp, _ := newArm("http", "http", o.endpoint)
	arms := []*arm{none, eb, hp}
	for _, a := range arms {
		if _, err := a.l.run(warmup, 0); err != nil { // not measured
			return nil, err
		}
	}
	_ = eb.l.buf.Flush(10 * time.Second)
	for r := 0; r < rounds; r++ {
		for _, a := range append(arms[r%3:], arms[:r%3]...) { // rotate the order
			if err := runArm(a, block, 0); err != nil {
				return nil, err
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
	// edgebuf's cost per round: the blocks of a round ran back to back, so the difference of
	// their means is little affected by a load that comes and goes; the spread of the rounds'
	// differences tells how far the overall difference can be trusted.
	roundD := make([]float64, 0, rounds)
	for i := range min(len(none.parts), len(eb.parts)) {
		roundD = append(roundD, meanUs(eb.parts[i].iter)-meanUs(none.parts[i].iter))
	}

	// The same at a steady rate: the loop sleeps between predictions, as a camera or sensor
	// loop does, and each iteration starts with cold caches.
	var paced []*arm
	if rate > 0 && pacedCount > 0 {
		tag := fmt.Sprintf("@%g/s", rate)
		pn, _ := newArm("none"+tag, "none", "")
		pe, err := newArm("edgebuf"+tag, "edgebuf", o.endpoint)
		if err != nil {
			return nil, err
		}
		paced = []*arm{pn, pe}
		for _, a := range paced {
			a.l.run(max(1, warmup/4), rate)
		}
		_ = pe.l.buf.Flush(10 * time.Second)
		for r := 0; r < pacedRounds; r++ {
			for _, a := range append(paced[r%2:], paced[:r%2]...) {
				if err := runArm(a, max(1, pacedCount/pacedRounds), rate); err != nil {
					return nil, err
				}
			}
		}
		if err := pe.l.buf.Flush(o.flushTimeout); err != nil {
			pe.note = "flush: " + err.Error()
		}
		pe.l.buf.Close(5 * time.Second)
	}

	// An outage: edgebuf with an endpoint that refuses connections, and with one that accepts
	// them and never answers. As many predictions as the other arms, and at least outageMinS.
	nOutage := block * rounds
	if k.outageMinS > 0 {
		perIterS := meanUs(merge(eb.parts).iter) / 1e6
		nOutage = max(nOutage, int(k.outageMinS/perIterS)+1)
	}
	outage := func(label, endpoint string) (*arm, error) {
		a, err := newArm(label, "edgebuf", endpoint)
		if err != nil {
			return nil, err
		}
		a.l.run(warmup, 0)
		t := time.Now()
		if err := runArm(a, nOutage, 0); err != nil {
			return nil, err
		}
		took := time.Since(t).Seconds()
		st, _ := a.l.buf.Status()
		t = time.Now()
		a.l.buf.Close(0)
		a.note = fmt.Sprintf("%.1f s; %d pending, %d failed attempts, connectivity %s; Close(0) took %.2f s",
			took, st.PendingRecords, st.FailedAttemptsTotal, st.Connectivity, time.Since(t).Seconds())
		return a, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	refused := "http://" + ln.Addr().String() + "/ingest"
	ln.Close() // nothing listens there now: connections are refused
	down, err := outage("edgebuf/down", refused)
	if err != nil {
		return nil, err
	}
	hangLn, err := net.Listen("tcp", "127.0.0.1:0") // the kernel accepts; nobody answers
	if err != nil {
		return nil, err
	}
	hang, err := outage("edgebuf/hang", "http://"+hangLn.Addr().String()+"/ingest")
	hangLn.Close()
	if err != nil {
		return nil, err
	}

	all := append(append([]*arm{none, eb, hp}, paced...), down, hang)
	rows := make([]row, 0, len(all))
	for _, a := range all {
		rows = append(rows, rowOf(a))
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
	fmt.Printf("µs per prediction. p50/p99/max: one whole iteration (inference + logging); pred/s from their sum.\n"+
		"record: building it (sha256 of %s, JSON by hand), p50. log50/99/max: Buffer.Log (edgebuf)\n"+
		"or the synchronous POST (http).\n", k.hashed)
	for _, r := range rows {
		if r.note != "" {
			fmt.Printf("  %-16s %s\n", r.label, r.note)
		}
	}
	fmt.Println()

	n, e, h := rows[0], rows[1], rows[2]
	base := n.it.mean
	pc := func(us float64) string { return fmtPct(100 * us / base) }
	cost := e.rec.mean + e.lg.mean
	d, d50 := e.it.mean-base, e.it.p50-n.it.p50
	var dSE float64
	if len(roundD) > 1 {
		var mu, ss float64
		for _, v := range roundD {
			mu += v
		}
		mu /= float64(len(roundD))
		for _, v := range roundD {
			ss += (v - mu) * (v - mu)
		}
		dSE = math.Sqrt(ss/float64(len(roundD)-1)) / math.Sqrt(float64(len(roundD)))
	}
	fmt.Printf("loop without logging: %.1f µs per prediction (mean; p50 %.1f), %.0f predictions/s\n",
		base, n.it.p50, n.perS)
	fmt.Printf("edgebuf: building the record %.2f µs = %s %% + the Log call %.2f µs = %s %% = %.2f µs per prediction\n"+
		"  (means; p50 %.2f + %.2f) = %s %% of that loop time; the sha256 of %s: %.2f µs (timed apart)\n",
		e.rec.mean, pc(e.rec.mean), e.lg.mean, pc(e.lg.mean), cost, e.rec.p50, e.lg.p50, pc(cost), k.hashed, hashUs(k))
	noisy := (d+2*dSE >= 0.01*base) != (d-2*dSE >= 0.01*base)
	noise := ""
	if noisy {
		noise = ", within noise of 1 %"
	}
	fmt.Printf("  difference of the iteration means %+.2f µs ± %.2f (standard error over the %d rounds%s) = %s %% ± %s;\n"+
		"  of the p50s %+.2f µs\n", d, dSE, len(roundD), noise, pc(d), pc(dSE), d50)
	fmt.Printf("  goal < 1 %% of the loop time: %s (record + Log %s %%, difference of the means %s %%); the Log call "+
		"alone: %s;\n  at this cost the goal holds for a loop of %.2f ms or more per prediction\n",
		metStr(under1(100*cost/base) && under1(100*d/base)), pc(cost), pc(d), metStr(under1(100*e.lg.mean/base)),
		max(cost, d)/10)
	out := &benchOut{kind: k, base: base, rec: e.rec.mean, lg: e.lg.mean, d: d, dSE: dSE}
	if len(paced) == 2 {
		pn, pe := rows[3], rows[4]
		pCost, pD, period := pe.rec.mean+pe.lg.mean, pe.it.mean-pn.it.mean, 1e6/rate
		out.paced, out.pacedRate, out.pacedCost, out.pacedD = true, rate, 100*pCost/period, 100*pD/period
		fmt.Printf("paced at %g/s (a %.0f µs period): iteration %.1f µs without logging, %.1f with edgebuf (mean);\n"+
			"  record + Log %.2f µs = %s %% of the period, difference of the means %+.2f µs = %s %%: %s\n",
			rate, period, pn.it.mean, pe.it.mean, pCost, fmtPct(out.pacedCost), pD, fmtPct(out.pacedD),
			metStr(under1(out.pacedCost) && under1(out.pacedD)))
	}
	hc := h.it.mean - base
	fmt.Printf("plain synchronous HTTP POST per prediction: %+.1f µs (mean; POST p99 %.1f) = %s %% of that loop time, "+
		"%.1fx the loop without logging\n", hc, h.lg.p99, pc(hc), h.it.mean/base)
	dn, hg := rows[len(rows)-2], rows[len(rows)-1]
	out.stallUs, out.outP99 = max(dn.it.max, hg.it.max), max(dn.it.p99, hg.it.p99)
	out.noneMax, out.noneP99 = n.it.max, n.it.p99
	fmt.Printf("edgebuf, endpoint down (refused): worst iteration %.0f µs, p99 %.1f (Log p99 %.2f)\n",
		dn.it.max, dn.it.p99, dn.lg.p99)
	fmt.Printf("edgebuf, endpoint hanging (accepts, never answers): worst iteration %.0f µs, p99 %.1f (Log p99 %.2f)\n",
		hg.it.max, hg.it.p99, hg.lg.p99)
	fmt.Printf("  without logging: worst %.0f µs, p99 %.1f; no stall (>= %d ms): %s\n",
		n.it.max, n.it.p99, o.stallMs, metStr(out.stallUs < float64(o.stallMs)*1000))
	fmt.Printf("(model %s: %.1f s)\n\n", k.name, time.Since(tModel).Seconds())
	return out, nil
}

// bench runs every model of ks in turn, then prints the goal, per model.
func bench(o options, ks []*modelKind, models map[string]*kindModel) int {
	t0 := time.Now()
	var outs []*benchOut
	for _, k := range ks {
		count, rate, paced := o.count, o.benchRate, o.benchPaced
		if k.key == "camera" {
			count, rate, paced = o.cameraCount, o.cameraRate, o.cameraPaced
		}
		out, err := benchModel(o, models[k.key], count, rate, paced)
		if err != nil {
			log.Printf("bench %s: %v", k.name, err)
			return 1
		}
		outs = append(outs, out)
	}
	fmt.Println("== goal: edgebuf costs under 1 % of the loop's time, and the loop never stalls during an outage")
	for _, b := range outs {
		pc := func(us float64) string { return fmtPct(100 * us / b.base) }
		cost := b.rec + b.lg
		fmt.Printf("%s (%s, %.1f µs per prediction without logging): goal < 1 %% of the loop time: %s\n",
			b.kind.name, strings.SplitN(b.kind.describe, ":", 2)[0], b.base,
			metStr(under1(100*cost/b.base) && under1(100*b.d/b.base)))
		fmt.Printf("  building the record %.2f µs = %s %% (sha256 of %s, JSON: any way of logging needs them)\n"+
			"  + the Log call %.2f µs = %s %% (%s on its own) = %s %%; difference of the iteration means %s %% ± %s\n",
			b.rec, pc(b.rec), b.kind.hashed, b.lg, pc(b.lg), metStr(under1(100*b.lg/b.base)), pc(cost),
			pc(b.d), pc(b.dSE))
		if b.paced {
			fmt.Printf("  paced at %g/s: record + Log %s %% of the period, difference of the means %s %%: %s\n",
				b.pacedRate, fmtPct(b.pacedCost), fmtPct(b.pacedD), metStr(under1(b.pacedCost) && under1(b.pacedD)))
		}
		fmt.Printf("  never stalls with the endpoint down or hanging: %s (worst iteration %s, p99 %s;\n"+
			"  without logging: worst %s, p99 %s; a stall: >= %d ms)\n",
			metStr(b.stallUs < float64(o.stallMs)*1000), fmtUs(b.stallUs), fmtUs(b.outP99), fmtUs(b.noneMax),
			fmtUs(b.noneP99), o.stallMs)
	}
	fmt.Printf("(bench: %.1f s)\n", time.Since(t0).Seconds())
	return 0
}

// --- main ----------------------------------------------------------------------------------

func main() {
	log.SetFlags(0)
	log.SetPrefix("onnxloop-harness: ")
	var o options
	flag.StringVar(&o.endpoint, "endpoint", "", "URL the records are POSTed to (edgebuf and http modes)")
	flag.StringVar(&o.path, "path", "onnxloop.db", "the edgebuf buffer file (SQLite)")
	flag.IntVar(&o.count, "count", 3000, "predictions to make (-bench: per mode, sensor model)")
	flag.Float64Var(&o.rate, "rate", 500, "predictions per second; 0 = as fast as possible")
	ortLib := flag.String("ort-lib", os.Getenv("ONNXRUNTIME_LIB"), "path of libonnxruntime.so (default $ONNXRUNTIME_LIB)")
	kindKey := flag.String("model-kind", "sensor", "sensor (16-32-4 MLP, µs) or camera (128x128 CNN, ~2.5 ms); -bench: both unless given")
	modelsDir := flag.String("models", ".", "the directory examples-python/models.py wrote sensor.onnx and camera.onnx to")
	modelPath := flag.String("model", "", "the ONNX file of -model-kind (default: -models/<kind>.onnx)")
	flag.StringVar(&o.mode, "mode", "edgebuf", "none, edgebuf or http")
	benchMode := flag.Bool("bench", false, "run none, edgebuf and http (and edgebuf during an outage) and print a table")
	flag.StringVar(&o.logged, "logged", "", "edgebuf mode: write every accepted record to this file, one line each")
	flag.StringVar(&o.source, "source", "onnx-loop-go", "source.id of the records")
	flag.DurationVar(&o.flushTimeout, "flush-timeout", 30*time.Second, "how long to wait for delivery at the end")
	flag.BoolVar(&o.quiet, "quiet", false, "no status lines")
	flag.Float64Var(&o.benchRate, "bench-rate", 1000, "-bench, sensor model: the rate of the paced runs; 0 = none")
	flag.IntVar(&o.benchPaced, "bench-paced-count", 1000, "-bench, sensor model: predictions per paced run")
	flag.IntVar(&o.cameraCount, "camera-count", 500, "-bench, camera model: predictions per mode")
	flag.Float64Var(&o.cameraRate, "camera-bench-rate", 30, "-bench, camera model: the rate of the paced runs; 0 = none")
	flag.IntVar(&o.cameraPaced, "camera-paced-count", 150, "-bench, camera model: predictions per paced run")
	flag.IntVar(&o.stallMs, "stall-ms", 250, "-bench: an iteration this long with the endpoint down is a stall")
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
	kindSet := false
	flag.Visit(func(f *flag.Flag) { kindSet = kindSet || f.Name == "model-kind" })
	kind := kindByKey(*kindKey)
	if kind == nil {
		log.Fatalf("-model-kind must be sensor or camera, not %q", *kindKey)
	}
	use := []*modelKind{kind}
	if *benchMode && !kindSet {
		use = kinds
		if *modelPath != "" {
			log.Fatal("-bench runs both models: give -models DIR, or -model-kind with -model")
		}
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
	models := map[string]*kindModel{}
	destroy := func() {
		for _, m := range models {
			m.destroy()
		}
		ort.DestroyEnvironment()
	}
	for _, k := range use {
		p := *modelPath
		if p == "" {
			p = filepath.Join(*modelsDir, k.key+".onnx")
		}
		m, err := loadKind(p, k)
		if err != nil {
			destroy()
			log.Fatalf("model %s (%s): %v", k.key, p, err)
		}
		models[k.key] = m
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() { <-sig; stop.Store(true) }()

	var code int
	if *benchMode {
		code = bench(o, use, models)
	} else {
		code = runOnce(o, models[kind.key])
	}
	destroy()
	os.Exit(code)
}
