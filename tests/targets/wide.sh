#!/usr/bin/env bash
# wide.sh WIDE_TEST: 64-bit values on a target's architecture (tests/c/wide_test.c under
# $EDGEBUF_TARGET_RUNNER), above all on 32-bit armv7. The program runs twice on one buffer
# file; in between, the file's seq high-water mark is moved past 2^32 as a device that has
# logged four billion records would have it. The receiver must then get seq and id past 2^32,
# one instance throughout, and ts_ms within each run's wall-clock window.
set -euo pipefail
prog=$1
cd "$(dirname "$0")/../.."
. scripts/common.sh
read -r -a runner <<<"${EDGEBUF_TARGET_RUNNER:-}"
COUNT=40
HWM=$(( (1 << 32) + 1000 ))
with_receiver
db="$tmp/wide.db"
run() {
  date +%s%3N >"$tmp/start.$1"
  env ${2:+WIDE_MAX_CAPACITY=1} timeout 120 ${runner[@]+"${runner[@]}"} "$prog" "$db" "http://127.0.0.1:$port/ingest" "$COUNT" \
    >"$tmp/run.$1.log" 2>&1 || { cat "$tmp/run.$1.log" >&2; exit 1; }
  date +%s%3N >"$tmp/end.$1"
  tail -1 "$tmp/run.$1.log"
}
run 1
python3 - "$db" "$HWM" <<'PY'
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
con.execute("UPDATE meta SET value=? WHERE key='hwm'", (int(sys.argv[2]),))
con.commit()
con.close()
PY
run 2 max
stop_receiver
python3 - "$out" "$COUNT" "$HWM" "$tmp" <<'PY'
import json, sys
out, count, hwm, tmp = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
win = [(int(open(f"{tmp}/start.{r}").read()), int(open(f"{tmp}/end.{r}").read())) for r in (1, 2)]
envs = [json.loads(l) for l in open(out)]
want = list(range(1, count + 1)) + list(range(hwm + 1, hwm + count + 1))
problems = []
if sorted(e["seq"] for e in envs) != want:
    problems.append("seqs received: %s" % sorted(e["seq"] for e in envs)[:5])
if len({e["id"].split("-")[0] for e in envs}) != 1:
    problems.append("more than one instance")
for e in envs:
    inst, _, seq = e["id"].partition("-")
    if int(seq) != e["seq"]:
        problems.append("id %s does not end in seq %d" % (e["id"], e["seq"]))
    lo, hi = win[0] if e["seq"] <= count else win[1]
    if not lo <= e["ts_ms"] <= hi:
        problems.append("seq %d: ts_ms %d outside %d..%d" % (e["seq"], e["ts_ms"], lo, hi))
    if e["data"]["i"] == count // 2 and len(e["data"]["pad"]) < 70000:
        problems.append("the 70 KB record arrived short")
if problems:
    print("FAIL: " + "; ".join(problems[:5]))
    sys.exit(1)
print("wide values: %d records, seq %d..%d and %d..%d (past 2^32), ts_ms in each run's window"
      % (len(envs), 1, count, hwm + 1, hwm + count))
PY
