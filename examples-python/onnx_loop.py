#!/usr/bin/env python3
"""An ONNX Runtime inference loop that logs every prediction through edgebuf.

Each prediction becomes one JSON record (model, version, n, input hash, scores, argmax,
inference latency in µs) handed to edgebuf, which stores it in SQLite and delivers it by HTTP
in the background: buf.log() never waits for the network, and what is not delivered when the
loop ends stays on disk for the next start. The envelope ``id`` edgebuf assigns is what a
receiver dedupes on.

    onnx_loop.py --model MODEL.onnx --endpoint URL [--path FILE] [--count N] [--rate PER_S]

The model takes one float32 input "x" and gives "probs" (models.py writes two such models:
sensor.onnx and camera.onnx). The inputs here are random readings of the model's input shape:
replace readings() with your sensors or camera. harness.py measures this loop (outage runs,
cost tables, the exactly-once check of examples-python/run.sh).
"""

import argparse
import hashlib
import json
import os
import signal
import sys
import time

import numpy as np
import onnxruntime as ort

import edgebuf


def make_session(model):
    """An InferenceSession (model: a file name or the model's bytes) on one thread."""
    opts = ort.SessionOptions()
    # One thread, no spinning: the default pool spins on every core between runs, which on a
    # small device takes the CPU edgebuf's writer and sender threads (and the receiver) need.
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def input_hash(raw):
    """What the record says the prediction was made from: blake2b-128 of the input's bytes."""
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def prediction_record(model, version, n, hashed, probs, latency_us):
    """One prediction as the JSON text edgebuf logs (compact: every byte is stored and sent)."""
    return json.dumps({
        "model": model,
        "version": version,
        "n": n,
        "input_hash": hashed,
        "scores": probs.tolist(),
        "argmax": int(probs.argmax()),
        "latency_us": latency_us,
    }, separators=(",", ":"))


def status_line(st):
    """edgebuf's status in one line: what is logged, waiting, delivered, and the endpoint."""
    conn = {edgebuf.Connectivity.ONLINE: "online",
            edgebuf.Connectivity.OFFLINE: "OFFLINE"}.get(st.connectivity, "unknown")
    line = "logged=%d pending=%d delivered=%d failed_attempts=%d connectivity=%s" % (
        st.logged_total, st.pending_records, st.delivered_total, st.failed_attempts_total, conn)
    if st.next_retry_in_ms:
        line += " next_retry_in=%dms" % st.next_retry_in_ms
    return line


def readings(sess, seed=1):
    """Random float32 inputs of the model's input shape (a named dimension counts 1)."""
    shape = [d if isinstance(d, int) else 1 for d in sess.get_inputs()[0].shape]
    rng = np.random.default_rng(seed)
    while True:
        yield rng.normal(0.0, 1.0, shape).astype(np.float32)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="the ONNX model file")
    ap.add_argument("--endpoint", required=True, help="the URL edgebuf POSTs the records to")
    ap.add_argument("--path", default="predictions.db", help="edgebuf's buffer file")
    ap.add_argument("--count", type=int, default=1000, help="predictions; 0 = until SIGTERM")
    ap.add_argument("--rate", type=float, default=100.0, help="predictions per second; 0 = as fast as possible")
    args = ap.parse_args(argv)

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    sess = make_session(args.model)
    name = os.path.splitext(os.path.basename(args.model))[0]

    # Only path and endpoint are required; every other key has a default (see the README).
    with edgebuf.Buffer(path=args.path, endpoint=args.endpoint) as buf:
        start = time.monotonic()
        next_status = start + 1.0
        for n, x in enumerate(readings(sess), 1):
            if stop or (args.count and n > args.count):
                break
            t0 = time.perf_counter_ns()
            probs = sess.run(["probs"], {"x": x})[0][0]
            latency_us = (time.perf_counter_ns() - t0) // 1000
            record = prediction_record(name, "1.0.0", n, input_hash(x.tobytes()), probs,
                                       latency_us)
            try:
                buf.log(record)  # about a microsecond: queued in memory, stored, sent later
            except edgebuf.Full:
                print("buffer full: prediction %d not kept" % n, file=sys.stderr)
            if time.monotonic() >= next_status:
                next_status += 1.0
                print("[%5.1fs] %s" % (time.monotonic() - start, status_line(buf.status())),
                      flush=True)
            if args.rate > 0:
                time.sleep(max(0.0, start + n / args.rate - time.monotonic()))

        # The loop is over: try the endpoint now, and give delivery a few seconds.
        buf.retry_now()
        try:
            buf.flush(10.0)
        except edgebuf.Timeout:
            print("not delivered yet: kept on disk for the next start", file=sys.stderr)
        print("done: %s" % status_line(buf.status()), flush=True)
    # Leaving the block closed the buffer (what is still pending stays in the file).
    return 0


if __name__ == "__main__":
    sys.exit(main())
