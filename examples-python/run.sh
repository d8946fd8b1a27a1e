#!/usr/bin/env bash
# Test of the ONNX Runtime example (examples-python/onnx_loop.py), through its measuring
# harness (examples-python/harness.py, which runs the example's loop timed per iteration): an
# onnxruntime inference loop (the sensor model of models.py, a 16-32-4 MLP: fast, so the test
# is short) logs COUNT predictions at RATE/s through the Python binding to the reference
# receiver (`edgebuf receive`) on 127.0.0.1; after DOWN_AT s the receiver goes down for
# DOWN_FOR s. Then it checks, from the receiver's output file, that every logged prediction
# arrived exactly once by envelope id with the scores that were logged, and that no loop
# iteration stalled during the outage (worst under STALL_MS). Then onnx_loop.py itself runs
# as a user would (EXAMPLE_COUNT predictions of models.py's sensor.onnx) and must end with
# nothing pending. Last, harness.py --bench prints, for the sensor model and for the camera
# model (a 128x128 CNN, a few ms per inference), the cost table (no logging / edgebuf / plain
# HTTP POST per prediction / edgebuf with the endpoint down or hanging) and whether the goal
# (edgebuf under 1 % of the loop's time, no stall) is met for each. Exits non-zero on any
# mismatch.
#
#   COUNT (3000) RATE (500) DOWN_AT (2) DOWN_FOR (2.5) STALL_MS (250)
#   BENCH_COUNT (5000: sensor predictions per mode) CAMERA_COUNT (500: camera, per mode)
#   OUTAGE=kill (default: the process is stopped, connections refused, then restarted on the
#   same port), stop (SIGSTOP/SIGCONT: connections hang) or fail (its control file: 503).
#   BENCH=0 skips the table. EXAMPLE_COUNT (500).
#
# Needs cargo, python3 with venv, and PyPI (scripts/onnx-venv.sh installs onnxruntime, onnx and
# numpy into target/onnx-venv once).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh

COUNT=${COUNT:-3000}
RATE=${RATE:-500}
DOWN_AT=${DOWN_AT:-2}
DOWN_FOR=${DOWN_FOR:-2.5}
STALL_MS=${STALL_MS:-250}
BENCH_COUNT=${BENCH_COUNT:-5000}
CAMERA_COUNT=${CAMERA_COUNT:-500}
EXAMPLE_COUNT=${EXAMPLE_COUNT:-500}
BENCH=${BENCH:-1}
OUTAGE=${OUTAGE:-kill}
case "$OUTAGE" in kill|stop|fail) ;; *) echo "OUTAGE must be kill, stop or fail" >&2; exit 2 ;; esac

tmp=$(mktemp -d)
rpid=""
lpid=""
stopped=0
cleanup() {
  local p
  for p in $lpid $rpid; do kill "$p" 2>/dev/null || true; done
  if [ -n "$rpid" ] && [ "$stopped" = 1 ]; then kill -CONT "$rpid" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== building the library and the edgebuf CLI (release); the ONNX Runtime venv"
build_lib
cargo build --release --quiet --bin edgebuf
cli=target/release/edgebuf
venv_out=$(timeout 600 scripts/onnx-venv.sh)
py=$(sed -n 1p <<<"$venv_out")
[ -x "$py" ] || { echo "scripts/onnx-venv.sh gave no python" >&2; exit 1; }
export EDGEBUF_LIB="$PWD/target/release/libedgebuf.so"
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}" no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"

out="$tmp/received.ndjson"
control="$tmp/receiver.control"
: >"$control"


start_receiver 0
url="http://127.0.0.1:$port/ingest"
echo "== receiver on 127.0.0.1:$port; harness.py logs $COUNT predictions at $RATE/s;" \
  "outage ($OUTAGE) at ${DOWN_AT}s for ${DOWN_FOR}s"

timeout 90 "$py" examples-python/harness.py --model sensor --mode edgebuf --endpoint "$url" \
  --path "$tmp/buffer.db" --count "$COUNT" --rate "$RATE" --logged "$tmp/logged.ndjson" \
  --flush-timeout 30 --retry-max-ms 2000 > >(tee "$tmp/loop.log") &
lpid=$!

nap "$DOWN_AT"
case "$OUTAGE" in
  kill) stop_receiver; echo "== receiver DOWN (process stopped: connections refused)" ;;
  stop) kill -STOP "$rpid"; stopped=1; echo "== receiver DOWN (SIGSTOP: connections hang)" ;;
  fail) echo down >"$control"; echo "== receiver DOWN (answering 503)" ;;
esac
nap "$DOWN_FOR"
case "$OUTAGE" in
  kill) start_receiver "$port" ;;
  stop) kill -CONT "$rpid"; stopped=0 ;;
  fail) : >"$control" ;;
esac
echo "== receiver UP again on 127.0.0.1:$port"

loop_status=0
wait "$lpid" || loop_status=$?
lpid=""
stop_receiver
sleep 0.1   # let tee write the loop's last lines

check_onnx_run harness.py onnx-loop examples-python || exit 1
echo "OK: every logged prediction arrived exactly once, the loop never stalled"

echo
echo "== the example as a user runs it: onnx_loop.py, $EXAMPLE_COUNT predictions of sensor.onnx"
"$py" examples-python/models.py "$tmp/models"
start_receiver 0
timeout 60 "$py" examples-python/onnx_loop.py --model "$tmp/models/sensor.onnx" \
  --endpoint "http://127.0.0.1:$port/ingest" --path "$tmp/example.db" --count "$EXAMPLE_COUNT" \
  --rate 0 | tee "$tmp/example.log"
stop_receiver
grep -q "^done: logged=$EXAMPLE_COUNT pending=0 delivered=$EXAMPLE_COUNT " "$tmp/example.log" ||
  { echo "FAIL: onnx_loop.py did not deliver its $EXAMPLE_COUNT predictions" >&2; exit 1; }
echo "OK: onnx_loop.py delivered its $EXAMPLE_COUNT predictions"

if [ "$BENCH" != 0 ]; then
  echo
  echo "== bench: sensor model $BENCH_COUNT, camera model $CAMERA_COUNT predictions per mode," \
    "as fast as possible"
  start_receiver 0
  timeout 120 "$py" examples-python/harness.py --bench --endpoint "http://127.0.0.1:$port/ingest" \
    --path "$tmp/bench" --count "$BENCH_COUNT" --camera-count "$CAMERA_COUNT" --stall-ms "$STALL_MS"
  stop_receiver
fi
