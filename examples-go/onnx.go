package main

// The example's building blocks, shared with the measuring harness (harness.go): the ONNX
// Runtime session, the JSON record of one prediction, and edgebuf's status in one line.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"

	edgebuf "github.com/edgebuf/edgebuf/bindings/go"
	ort "github.com/yalue/onnxruntime_go"
)

// model is an ONNX Runtime session with its input ("x") and output ("probs") tensors.
type model struct {
	sess    *ort.AdvancedSession
	in, out *ort.Tensor[float32]
}

// loadModel opens the model at path; inShape and outShape are the shapes of "x" and "probs".
func loadModel(path string, inShape, outShape ort.Shape) (*model, error) {
	opts, err := ort.NewSessionOptions()
	if err != nil {
		return nil, err
	}
	defer opts.Destroy()
	// One thread, no spinning: the default pool spins on every core between runs, which on a
	// small device takes the CPU edgebuf's writer and sender threads need.
	for _, err := range []error{opts.SetIntraOpNumThreads(1), opts.SetInterOpNumThreads(1),
		opts.AddSessionConfigEntry("session.intra_op.allow_spinning", "0")} {
		if err != nil {
			return nil, err
		}
	}
	m := &model{}
	if m.in, err = ort.NewEmptyTensor[float32](inShape); err != nil {
		return nil, err
	}
	if m.out, err = ort.NewEmptyTensor[float32](outShape); err != nil {
		m.in.Destroy()
		return nil, err
	}
	m.sess, err = ort.NewAdvancedSession(path, []string{"x"}, []string{"probs"},
		[]ort.Value{m.in}, []ort.Value{m.out}, opts)
	if err != nil {
		m.in.Destroy()
		m.out.Destroy()
		return nil, err
	}
	return m, nil
}

// infer runs the model on what is in m.in; the scores are valid until the next call.
func (m *model) infer() ([]float32, error) {
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

// recorder builds the JSON record of a prediction into a reused buffer (no allocation):
// {"model":...,"version":...,"n":N,"input_hash":"<32 hex>","scores":[...],"argmax":K,"latency_us":L}
// input_hash: the first 16 bytes of the sha256 of the input (the reading, or the uint8 frame).
type recorder struct {
	prefix string
	buf    []byte
}

func newRecorder(name, version string) recorder {
	return recorder{prefix: `{"model":` + strconv.Quote(name) + `,"version":` + strconv.Quote(version) + `,"n":`}
}

// build returns the record; it is valid until the next call (edgebuf.Log copies it).
func (r *recorder) build(n uint64, hashed []byte, scores []float32, latencyUs int64) []byte {
	sum := sha256.Sum256(hashed)
	b := append(r.buf[:0], r.prefix...)
	b = strconv.AppendUint(b, n, 10)
	b = append(b, `,"input_hash":"`...)
	b = hex.AppendEncode(b, sum[:16])
	b = append(b, `","scores":[`...)
	k := 0
	for i, s := range scores {
		if i > 0 {
			b = append(b, ',')
		}
		if s > scores[k] {
			k = i
		}
		// The shortest decimal that reads back as the same float32.
		b = strconv.AppendFloat(b, float64(s), 'g', -1, 32)
	}
	b = append(b, `],"argmax":`...)
	b = strconv.AppendInt(b, int64(k), 10)
	b = append(b, `,"latency_us":`...)
	b = strconv.AppendInt(b, latencyUs, 10)
	r.buf = append(b, '}')
	return r.buf
}

// statusLine is edgebuf's status in one line: logged, waiting, delivered, and the endpoint.
func statusLine(st edgebuf.Status) string {
	c := st.Connectivity.String()
	if st.Connectivity == edgebuf.ConnectivityOffline {
		c = "OFFLINE"
	}
	line := fmt.Sprintf("logged=%d pending=%d delivered=%d failed_attempts=%d connectivity=%s",
		st.LoggedTotal, st.PendingRecords, st.DeliveredTotal, st.FailedAttemptsTotal, c)
	if st.NextRetryInMs > 0 {
		line += fmt.Sprintf(" next_retry_in=%dms", st.NextRetryInMs)
	}
	return line
}
