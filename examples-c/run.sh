#!/usr/bin/env bash
# Builds the C example shared and static, runs both against the reference receiver
# (`edgebuf receive`) on 127.0.0.1 and checks that every prediction arrived exactly once.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh
COUNT=${COUNT:-300}

cargo build --release --quiet --lib --bin edgebuf
ln -sf libedgebuf.so target/release/libedgebuf.so.0
make -s -C examples-c inference static
cli=target/release/edgebuf

tmp=$(mktemp -d)
rpid=""
cleanup() {
  if [ -n "$rpid" ]; then kill "$rpid" 2>/dev/null || true; wait "$rpid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

out="$tmp/received.ndjson"
start_receiver 0
for bin in inference inference-static; do
  timeout 50 ./examples-c/$bin --endpoint "http://127.0.0.1:$port/ingest" --path "$tmp/$bin.db" \
    --count "$COUNT" --rate 0 >"$tmp/$bin.log" || { cat "$tmp/$bin.log" >&2; exit 1; }
  grep '^summary:' "$tmp/$bin.log"
done
stop_receiver
grep 'stopped;' "$tmp"/receiver.*.log

# Every instance (one per buffer file) must have seqs 1..COUNT exactly once, from the
# example's source, with the prediction in data.
awk -v count="$COUNT" '
  {
    if (!match($0, /^\{"id":"[0-9a-f]+-[0-9]+","seq":[0-9]+,/)) { bad++; next }
    split(substr($0, 8, RLENGTH - 8), p, /[-"]/)
    inst = p[1]; seq = p[2] + 0
    if (index($0, "\"source\":\"demo-cam-01\",\"data\":{\"model\":\"sensor-logreg\"") == 0 ||
        index($0, "\"scores\":{") == 0) { bad++; next }
    if (seq < 1 || seq > count || seen[inst, seq]++) { bad++; next }
    n[inst]++
  }
  END {
    k = 0
    for (i in n) { k++; if (n[i] != count) { printf "instance %s: %d of %d records\n", i, n[i], count; bad++ } }
    if (k != 2) { printf "expected 2 buffers, got %d\n", k; bad++ }
    if (bad) { printf "examples-c: %d problems in the received records\n", bad; exit 1 }
    printf "examples-c: %d predictions received exactly once from 2 builds (shared, static)\n", NR
  }' "$tmp/received.ndjson"
