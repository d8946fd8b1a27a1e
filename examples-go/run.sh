#!/usr/bin/env bash
# Test of the Go ONNX Runtime example (examples-go/main.go and onnx.go), through its measuring
# harness (examples-go/harness.go, built with -tags harness: the example's session, records and
# status line in a loop timed per iteration): a Go inference loop
# (github.com/yalue/onnxruntime_go) running the sensor model (sensor-mlp, a 16-32-4 MLP) logs
# COUNT predictions at RATE/s through the Go binding to the reference receiver (`edgebuf
# receive`) on 127.0.0.1; after DOWN_AT s the receiver is stopped (connections refused) for
# DOWN_FOR s, then started again on the same port. Then it checks,
# from the receiver's output file, that every logged prediction arrived exactly once by envelope
# id with the record (and scores) that was logged, and that no iteration stalled during the
# outage (worst under STALL_MS). Then the example itself runs as a user would (EXAMPLE_COUNT
# predictions of sensor.onnx) and must end with nothing pending. Last, `onnxloop-harness
# -bench` prints the cost tables of both models,
# sensor-mlp and camera-cnn (a CNN on 128x128 RGB frames, ~2.5 ms per inference): no logging /
# edgebuf / plain net/http POST per prediction / paced / edgebuf with the endpoint down or
# hanging, and edgebuf's share of the loop time per model. Exits non-zero on any mismatch.
#
#   COUNT (3000) RATE (500) DOWN_AT (2) DOWN_FOR (2.5) STALL_MS (250)
#   BENCH_COUNT (20000): sensor predictions per bench mode; CAMERA_COUNT (500): camera ones
#   (at 30/s paced: CAMERA_PACED (150)). BENCH_MODEL (both): sensor or camera only.
#   RETRY_MAX_MS (1000): edgebuf's retry.max_ms in the outage run. With the default (60 s,
#   exponential with full jitter) the first retry after the receiver is back can come 15-30 s
#   later; a short cap keeps the test's wait bounded. BENCH=0 skips the table.
#   EXAMPLE_COUNT (500).
#
# Needs cargo, go (with cgo and a C compiler), python3 with venv, and the Go module proxy and
# PyPI (scripts/onnx-venv.sh installs onnxruntime, onnx and numpy into target/onnx-venv once;
# the ONNX Runtime shared library comes from that wheel).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh

COUNT=${COUNT:-3000}
RATE=${RATE:-500}
DOWN_AT=${DOWN_AT:-2}
DOWN_FOR=${DOWN_FOR:-2.5}
STALL_MS=${STALL_MS:-250}
BENCH_COUNT=${BENCH_COUNT:-20000}
CAMERA_COUNT=${CAMERA_COUNT:-500}
CAMERA_PACED=${CAMERA_PACED:-150}
BENCH_MODEL=${BENCH_MODEL:-}
BENCH=${BENCH:-1}
RETRY_MAX_MS=${RETRY_MAX_MS:-1000}
EXAMPLE_COUNT=${EXAMPLE_COUNT:-500}
OUTAGE=kill   # the receiver process is stopped (check_onnx_run reads this)

command -v go >/dev/null || { echo "examples-go: go (1.22 or newer, with cgo) is not installed" >&2; exit 1; }

tmp=$(mktemp -d)
rpid=""
lpid=""
cleanup() {
  local p
  for p in $lpid $rpid; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== building the library and the edgebuf CLI (release), the ONNX Runtime venv, the Go example"
build_lib
cargo build --release --quiet --bin edgebuf
cli=target/release/edgebuf
venv_out=$(timeout 600 scripts/onnx-venv.sh)
py=$(sed -n 1p <<<"$venv_out")
ort_lib=$(sed -n 2p <<<"$venv_out")
[ -x "$py" ] && [ -f "$ort_lib" ] || { echo "scripts/onnx-venv.sh gave no python or no libonnxruntime.so" >&2; exit 1; }
"$py" examples-python/models.py "$tmp"   # sensor.onnx, camera.onnx (examples-python's models)
# -mod=readonly: go.mod and go.sum must be complete as committed (a cold cache downloads the
# module from the proxy). The example, and the harness (-tags harness: harness.go's main
# instead of main.go's).
(cd examples-go && CGO_ENABLED=1 timeout 300 go build -mod=readonly -tags edgebuf_repo -o "$tmp/onnxloop" . &&
  CGO_ENABLED=1 timeout 300 go build -mod=readonly -tags harness,edgebuf_repo -o "$tmp/onnxloop-harness" .)
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}" no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"

out="$tmp/received.ndjson"


start_receiver 0
url="http://127.0.0.1:$port/ingest"
echo "== receiver on 127.0.0.1:$port; onnxloop-harness logs $COUNT predictions at $RATE/s;" \
  "outage (receiver stopped) at ${DOWN_AT}s for ${DOWN_FOR}s"

timeout 90 "$tmp/onnxloop-harness" -ort-lib "$ort_lib" -models "$tmp" -model-kind sensor -mode edgebuf \
  -endpoint "$url" -path "$tmp/buffer.db" -count "$COUNT" -rate "$RATE" \
  -set retry.max_ms="$RETRY_MAX_MS" -logged "$tmp/logged.ndjson" -flush-timeout 30s \
  > >(tee "$tmp/loop.log") &
lpid=$!

nap "$DOWN_AT"
stop_receiver
echo "== receiver DOWN (process stopped: connections refused)"
nap "$DOWN_FOR"
start_receiver "$port"
echo "== receiver UP again on 127.0.0.1:$port"

loop_status=0
wait "$lpid" || loop_status=$?
lpid=""
stop_receiver
sleep 0.1   # let tee write the loop's last lines

check_onnx_run onnxloop-harness onnx-loop-go examples-go || exit 1
echo "OK: every logged prediction arrived exactly once, the loop never stalled"

echo
echo "== the example as a user runs it: onnxloop, $EXAMPLE_COUNT predictions of sensor.onnx"
start_receiver 0
timeout 60 "$tmp/onnxloop" -ort-lib "$ort_lib" -model "$tmp/sensor.onnx" \
  -endpoint "http://127.0.0.1:$port/ingest" -path "$tmp/example.db" -count "$EXAMPLE_COUNT" \
  -rate 0 | tee "$tmp/example.log"
stop_receiver
grep -q "^done: logged=$EXAMPLE_COUNT pending=0 delivered=$EXAMPLE_COUNT " "$tmp/example.log" ||
  { echo "FAIL: onnxloop did not deliver its $EXAMPLE_COUNT predictions" >&2; exit 1; }
echo "OK: onnxloop delivered its $EXAMPLE_COUNT predictions"

if [ "$BENCH" != 0 ]; then
  echo
  echo "== bench: ${BENCH_MODEL:-both models}; $BENCH_COUNT sensor / $CAMERA_COUNT camera predictions" \
    "per mode as fast as possible, $CAMERA_PACED camera ones at 30/s"
  start_receiver 0
  timeout 150 "$tmp/onnxloop-harness" -bench -ort-lib "$ort_lib" -models "$tmp" \
    ${BENCH_MODEL:+-model-kind "$BENCH_MODEL"} -endpoint "http://127.0.0.1:$port/ingest" \
    -path "$tmp/bench" -count "$BENCH_COUNT" -camera-count "$CAMERA_COUNT" \
    -camera-paced-count "$CAMERA_PACED" -stall-ms "$STALL_MS"
  stop_receiver
fi
