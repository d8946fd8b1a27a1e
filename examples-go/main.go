//go:build !harness

// Command onnxloop is an ONNX Runtime inference loop in Go that logs every prediction through
// edgebuf (the Go binding in ../bindings/go), with github.com/yalue/onnxruntime_go.
//
// Each prediction becomes one JSON record (model, version, n, input hash, scores, argmax,
// inference latency in µs; onnx.go builds it) handed to edgebuf, which stores it in SQLite and
// delivers it by HTTP in the background: Log never waits for the network, and what is not
// delivered when the loop ends stays on disk for the next start. The envelope id edgebuf
// assigns is what a receiver dedupes on.
//
//	onnxloop -ort-lib LIBONNXRUNTIME.so -model MODEL.onnx -endpoint URL [-path FILE]
//	         [-count N] [-rate PER_S]
//
// The model takes one float32 input "x" and gives "probs" (examples-python/models.py writes
// two such models). The inputs here are random readings of the model's input shape: replace
// readSensors with your sensors or camera. harness.go (go build -tags harness) measures this
// loop: outage runs, cost tables, the exactly-once check of examples-go/run.sh.
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"log"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	edgebuf "github.com/edgebuf/edgebuf/bindings/go"
	ort "github.com/yalue/onnxruntime_go"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("onnxloop: ")
	ortLib := flag.String("ort-lib", os.Getenv("ONNXRUNTIME_LIB"), "path of libonnxruntime.so")
	modelPath := flag.String("model", "sensor.onnx", `the ONNX model: input "x", output "probs"`)
	endpoint := flag.String("endpoint", "", "the URL edgebuf POSTs the records to")
	path := flag.String("path", "predictions.db", "edgebuf's buffer file")
	count := flag.Int("count", 1000, "predictions; 0 = until SIGINT or SIGTERM")
	rate := flag.Float64("rate", 100, "predictions per second; 0 = as fast as possible")
	flag.Parse()
	if *endpoint == "" || *ortLib == "" {
		log.Fatal("-endpoint and -ort-lib (or $ONNXRUNTIME_LIB) are required")
	}

	ort.SetSharedLibraryPath(*ortLib) // ONNX Runtime 1.24 or newer (onnxruntime_go v1.27)
	check(ort.InitializeEnvironment(ort.WithLogLevelWarning()))
	defer ort.DestroyEnvironment()
	ins, outs, err := ort.GetInputOutputInfo(*modelPath)
	check(err)
	m, err := loadModel(*modelPath, fixed(ins[0].Dimensions), fixed(outs[0].Dimensions))
	check(err)
	defer m.destroy()

	// Only path and endpoint are required; every other key has a default (see the README).
	buf, err := edgebuf.Open(edgebuf.Config{"path": *path, "endpoint": *endpoint})
	check(err) // errors.Is(err, edgebuf.ErrLocked): another process owns the file

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	rec := newRecorder(strings.TrimSuffix(filepath.Base(*modelPath), ".onnx"), "1.0.0")
	rng := rand.New(rand.NewPCG(1, 2))
	var raw []byte
	start := time.Now()
	nextStatus := start.Add(time.Second)
	for n := 1; ctx.Err() == nil && (*count == 0 || n <= *count); n++ {
		raw = readSensors(rng, m.in.GetData(), raw[:0])
		t0 := time.Now()
		scores, err := m.infer()
		check(err)
		latencyUs := time.Since(t0).Microseconds()
		// About a microsecond: queued in memory, stored and sent by edgebuf's threads.
		if err := buf.Log(rec.build(uint64(n), raw, scores, latencyUs)); err != nil {
			log.Printf("prediction %d not kept: %v", n, err) // edgebuf.ErrFull, for one
		}
		if now := time.Now(); now.After(nextStatus) {
			nextStatus = nextStatus.Add(time.Second)
			if st, err := buf.Status(); err == nil {
				fmt.Printf("[%5.1fs] %s\n", now.Sub(start).Seconds(), statusLine(st))
			}
		}
		if *rate > 0 {
			time.Sleep(time.Until(start.Add(time.Duration(float64(n) / *rate * float64(time.Second)))))
		}
	}

	// The loop is over: try the endpoint now, and give delivery a few seconds.
	_ = buf.RetryNow()
	if err := buf.Flush(10 * time.Second); err != nil {
		log.Printf("not delivered yet (%v): kept on disk for the next start", err)
	}
	if st, err := buf.Status(); err == nil {
		fmt.Println("done: " + statusLine(st))
	}
	if err := buf.Close(5 * time.Second); err != nil {
		log.Printf("close: %v", err) // what is still pending stays in the file
	}
}

// readSensors fills the model's input x with a reading and appends its bytes (what the
// record's input_hash is of) to raw.
func readSensors(rng *rand.Rand, x []float32, raw []byte) []byte {
	for i := range x {
		x[i] = float32(rng.NormFloat64())
		raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(x[i]))
	}
	return raw
}

// fixed is a model's shape with its free dimensions (the batch: -1) set to 1.
func fixed(s ort.Shape) ort.Shape {
	s = s.Clone()
	for i, d := range s {
		if d < 1 {
			s[i] = 1
		}
	}
	return s
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
