#!/usr/bin/env bash
# The edgebuf demo: a C inference loop logs predictions at ~200/s for ~12 s to a local
# receiver; the receiver goes down for ~4 s in the middle and comes back on the same port.
# Ends with a summary; exits 1 if any logged record was lost.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

COUNT=${DEMO_COUNT:-2400}
RATE=${DEMO_RATE:-200}
tmp=$(mktemp -d)
rpid=""
epid=""
cleanup() {
  [ -n "$epid" ] && kill "$epid" 2>/dev/null || true
  [ -n "$rpid" ] && kill "$rpid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

echo "== building the library and the C example"
build_lib
make -s -C examples-c inference

port=$(free_port)
url="http://127.0.0.1:$port/ingest"
out="$tmp/received.ndjson"

echo "== receiver on 127.0.0.1:$port; logging $COUNT predictions at $RATE/s"
start_receiver "$port" "$out"
./examples-c/inference "$url" "$tmp/buffer.db" "$COUNT" "$RATE" | tee "$tmp/example.log" &
epid=$!

sleep 3
kill "$rpid"; wait "$rpid" 2>/dev/null || true; rpid=""
down=$(date +%s.%N)
echo "== receiver DOWN (outage starts)"
sleep 4
start_receiver "$port" "$out"
up=$(date +%s.%N)
echo "== receiver UP again"

status=0
wait "$epid" || status=$?
epid=""

python3 - "$tmp/example.log" "$out" "$down" "$up" <<'PY'
import json, re, sys
log, out, down, up = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
summary = [l for l in open(log) if l.startswith("summary:")][-1]
vals = dict(re.findall(r"(\w+)=(\S+)", summary))
logged = int(vals["logged"])
ids = [json.loads(l)["id"] for l in open(out)]
dups = sum(1 for _ in open(out + ".dups"))
unique = len(set(ids))
lost = logged - unique
print()
print("== summary")
print(f"logged       {logged}")
print(f"delivered    {unique} unique ids received")
print(f"duplicates   {dups} (same id, acknowledgement lost)")
print(f"lost         {lost}")
print(f"outage       {up - down:.1f} s (receiver down)")
print(f"peak backlog {vals['peak_backlog']} records")
print(f"worst log    {vals['worst_log_us']} us for one edgebuf_log call")
sys.exit(0 if lost == 0 else 1)
PY
exit $status
