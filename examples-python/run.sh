#!/usr/bin/env bash
# Test of the ONNX Runtime example (examples-python/onnx_loop.py): an onnxruntime inference loop
# (the sensor model, a 16-32-4 MLP: fast, so the test is short) logs COUNT predictions at RATE/s
# through the Python binding to the reference receiver
# (`edgebuf receive`) on 127.0.0.1; after DOWN_AT s the receiver goes down for DOWN_FOR s.
# Then it checks, from the receiver's output file, that every logged prediction arrived
# exactly once by envelope id with the scores that were logged, and that no loop iteration
# stalled during the outage (worst under STALL_MS). Last, onnx_loop.py --bench prints, for the
# sensor model and for the camera model (a 128x128 CNN, a few ms per inference), the cost table
# (no logging / edgebuf / plain HTTP POST per prediction / edgebuf with the endpoint down or
# hanging) and whether the goal (edgebuf under 1 % of the loop's time, no stall) is met for
# each. Exits non-zero on any mismatch.
#
#   COUNT (3000) RATE (500) DOWN_AT (2) DOWN_FOR (2.5) STALL_MS (250)
#   BENCH_COUNT (5000: sensor predictions per mode) CAMERA_COUNT (500: camera, per mode)
#   OUTAGE=kill (default: the process is stopped, connections refused, then restarted on the
#   same port), stop (SIGSTOP/SIGCONT: connections hang) or fail (its control file: 503).
#   BENCH=0 skips the table.
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
echo "== receiver on 127.0.0.1:$port; onnx_loop.py logs $COUNT predictions at $RATE/s;" \
  "outage ($OUTAGE) at ${DOWN_AT}s for ${DOWN_FOR}s"

timeout 90 "$py" examples-python/onnx_loop.py --model sensor --mode edgebuf --endpoint "$url" \
  --path "$tmp/buffer.db" --count "$COUNT" --rate "$RATE" --logged "$tmp/logged.ndjson" \
  --flush-timeout 30 --retry-max-ms 2000 > >(tee "$tmp/loop.log") &
lpid=$!

# nap SECONDS: sleeps, but returns early when the loop has ended (it failed: no outage to play).
nap() {
  local end
  end=$(awk -v s="$1" 'BEGIN { printf "%d", s * 10 }')
  for _ in $(seq 1 "$end"); do kill -0 "$lpid" 2>/dev/null || return 0; sleep 0.1; done
}

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

fail=0
summary=$(grep '^summary:' "$tmp/loop.log" | tail -1 || true)
if [ -z "$summary" ]; then
  echo "FAIL: onnx_loop.py printed no summary (exit status $loop_status)" >&2
  exit 1
fi
if [ "$loop_status" -ne 0 ]; then
  echo "FAIL: onnx_loop.py exited with status $loop_status" >&2
  fail=1
fi
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" ${summary#summary:}"; }
duplicates=$(receiver_total duplicates)

# Every logged record exactly once by envelope id, with what was logged: the scores compared
# as numbers and the data bytes compared verbatim (edgebuf never re-encodes them).
"$py" scripts/check_received.py "$tmp/logged.ndjson" "$out" "$COUNT" onnx-loop examples-python || fail=1

worst=$(field worst_offline_iter_us)
offline_iters=$(field offline_iters)
echo
echo "== summary"
printf '%-22s %s\n' "logged" "$(field logged) predictions (loop p50 $(field iter_p50_us) us, p99 $(field iter_p99_us) us, max $(field iter_max_us) us per iteration)"
printf '%-22s %s\n' "edgebuf log call" "p50 $(field log_p50_us) us, p99 $(field log_p99_us) us, max $(field log_max_us) us (building the record: p50 $(field record_p50_us) us)"
printf '%-22s %s\n' "logging share" "$(field logging_pct_of_iter) % of an iteration, $(field logging_pct_of_period) % of the ${RATE}/s loop period"
printf '%-22s %s\n' "delivered" "$(field delivered) (edgebuf's count); flush $(field flush) after $(field flush_s) s"
printf '%-22s %s\n' "duplicates" "$duplicates (resent after a lost acknowledgement; dropped by the receiver)"
printf '%-22s %s\n' "outage" "edgebuf offline for $(field longest_offline_s) s, $(field failed_attempts) failed attempts, peak backlog $(field peak_backlog)"
printf '%-22s %s\n' "worst while offline" "$worst us over $offline_iters iterations; worst of the run $(field iter_max_us) us (limit ${STALL_MS} ms)"
# The outage must have happened as edgebuf saw it: failed attempts while the receiver refused
# or failed (a stopped receiver only holds the request open, shorter than http.timeout_ms: the
# backlog grows instead).
if [ "$OUTAGE" = stop ]; then
  if [ "$(field peak_backlog)" -lt "$(awk -v r="$RATE" -v d="$DOWN_FOR" 'BEGIN { print int(r * d / 2) }')" ]; then
    echo "FAIL: the backlog did not grow while the receiver was stopped" >&2
    fail=1
  fi
elif [ "${offline_iters:-0}" -eq 0 ] || [ "$(field failed_attempts)" = 0 ]; then
  echo "FAIL: edgebuf never saw the outage (no failed attempt or no iteration while offline)" >&2
  fail=1
fi
# No iteration of the whole run (the outage included) may stall.
if [ "$(field iter_max_us)" -gt $((STALL_MS * 1000)) ]; then
  echo "FAIL: an iteration took $(field iter_max_us) us: the loop stalled" >&2
  fail=1
fi
[ "$fail" -eq 0 ] || exit 1
echo "OK: every logged prediction arrived exactly once, the loop never stalled"

if [ "$BENCH" != 0 ]; then
  echo
  echo "== bench: sensor model $BENCH_COUNT, camera model $CAMERA_COUNT predictions per mode," \
    "as fast as possible"
  start_receiver 0
  timeout 120 "$py" examples-python/onnx_loop.py --bench --endpoint "http://127.0.0.1:$port/ingest" \
    --path "$tmp/bench" --count "$BENCH_COUNT" --camera-count "$CAMERA_COUNT" --stall-ms "$STALL_MS"
  stop_receiver
fi
