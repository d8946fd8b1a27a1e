#!/usr/bin/env bash
# The edgebuf demo: a C inference loop (examples-c/inference) logs predictions at ~200/s for
# ~12 s through edgebuf to the reference receiver (`edgebuf receive`) on 127.0.0.1. After ~3 s
# the receiver goes down for ~4 s, then comes back on the same port. The example prints a
# status line every second; the demo ends with a summary computed from what the receiver
# stored and the example's final status, and exits 1 if any logged record was lost.
#
#   DEMO_COUNT (2400) predictions at DEMO_RATE (200) per second; the outage starts after
#   DEMO_DOWN_AT (3) s and lasts DEMO_DOWN_FOR (4) s. DEMO_OUTAGE=kill (default) stops the
#   receiver process (connections refused); DEMO_OUTAGE=fail keeps it running but answering
#   503 (its --control-file says "down").
#
# Needs cargo, a C compiler, make, and coreutils; nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

COUNT=${DEMO_COUNT:-2400}
RATE=${DEMO_RATE:-200}
DOWN_AT=${DEMO_DOWN_AT:-3}
DOWN_FOR=${DEMO_DOWN_FOR:-4}
OUTAGE=${DEMO_OUTAGE:-kill}
case "$OUTAGE" in kill|fail) ;; *) echo "DEMO_OUTAGE must be kill or fail" >&2; exit 2 ;; esac

tmp=$(mktemp -d)
rpid=""
epid=""
cleanup() {
  local p
  for p in $epid $rpid; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

echo "== building the library, the edgebuf CLI and the C example (release)"
build_lib
cargo build --release --bin edgebuf
make -s -C examples-c inference
cli=target/release/edgebuf
out="$tmp/received.ndjson"
control="$tmp/receiver.control"
: >"$control"


start_receiver 0
url="http://127.0.0.1:$port/ingest"
echo "== receiver on 127.0.0.1:$port; logging $COUNT predictions at $RATE/s"

# The example's output goes to the terminal and to a log; $! is the example itself.
./examples-c/inference --endpoint "$url" --path "$tmp/buffer.db" --count "$COUNT" --rate "$RATE" \
  > >(tee "$tmp/example.log") &
epid=$!

sleep "$DOWN_AT"
if [ "$OUTAGE" = kill ]; then
  stop_receiver
  echo "== receiver DOWN (process stopped: connections refused)"
else
  echo down >"$control"
  echo "== receiver DOWN (answering 503)"
fi
down=$(now)
sleep "$DOWN_FOR"
if [ "$OUTAGE" = kill ]; then
  start_receiver "$port"
else
  : >"$control"
fi
up=$(now)
echo "== receiver UP again on 127.0.0.1:$port after $(secs "$down" "$up") s"

example_status=0
wait "$epid" || example_status=$?
epid=""
stop_receiver
sleep 0.1   # let tee finish writing the example's last lines

summary=$(grep '^summary:' "$tmp/example.log" | tail -1 || true)
if [ -z "$summary" ]; then
  echo "the example printed no summary (exit status $example_status)" >&2
  exit 1
fi
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" ${summary#summary:}"; }
logged=$(field logged)
# Distinct envelope ids the receiver stored (it keeps each (source, id) once; counted again
# here from the file itself).
unique=$(sed -n 's/^{"id":"\([^"]*\)".*/\1/p' "$out" | sort -u | wc -l)
# Duplicates the receiver turned away, over all its runs.
duplicates=$(receiver_total duplicates)
failed=$(receiver_total failed)
lost=$((logged - unique))

echo
echo "== summary"
printf '%-15s %s\n' "logged" "$logged predictions"
printf '%-15s %s\n' "delivered" "$unique unique ids received"
printf '%-15s %s\n' "duplicates" "$duplicates (same id sent again after a lost acknowledgement; dropped by the receiver)"
printf '%-15s %s\n' "lost" "$lost"
if [ "$OUTAGE" = kill ]; then
  printf '%-15s %s\n' "longest outage" "$(secs "$down" "$up") s receiver down; the device saw the endpoint offline for $(field longest_offline_s) s"
else
  printf '%-15s %s\n' "longest outage" "$(secs "$down" "$up") s receiver failing ($failed requests answered 503); the device saw the endpoint offline for $(field longest_offline_s) s"
fi
printf '%-15s %s\n' "peak backlog" "$(field peak_backlog) records pending in the buffer"
printf '%-15s %s\n' "failed sends" "$(field failed_attempts) attempts, retried with backoff"
printf '%-15s %s\n' "slowest log" "$(field worst_log_us) us for one edgebuf_log call"
if [ "$lost" -ne 0 ]; then
  echo "FAIL: $lost logged records never reached the receiver (the example counted" \
    "$(field dropped) dropped by a capacity policy, $(field dead_lettered) dead-lettered," \
    "$(field pending) still pending)" >&2
  exit 1
fi
if [ "$example_status" -ne 0 ]; then
  echo "FAIL: the example exited with status $example_status" >&2
  exit 1
fi
echo "OK: every logged prediction was delivered"
