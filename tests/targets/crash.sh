#!/usr/bin/env bash
# crash.sh LOGGER: the kill -9 test on a target's architecture. CYCLES times, the logger
# (tests/c/logger.c, under $EDGEBUF_TARGET_RUNNER) logs in durability=sync from 3 threads
# to a receiver on 127.0.0.1 and writes down every record whose edgebuf_log returned OK; after
# a random 0.3-1.5 s it is killed with SIGKILL (killing qemu-user kills the program it runs).
# The buffer file is then opened again for the next cycle. At the end the child drains the
# file, and every acknowledged record must have reached the receiver.
set -euo pipefail
prog=$1
cd "$(dirname "$0")/../.."
. scripts/common.sh
read -r -a runner <<<"${EDGEBUF_TARGET_RUNNER:-}"
CYCLES=${CYCLES:-6}
cpid=""
with_receiver
trap 'if [ -n "$cpid" ]; then kill -KILL "$cpid" 2>/dev/null || true; wait "$cpid" 2>/dev/null || true; fi; receiver_cleanup' EXIT
endpoint="http://127.0.0.1:$port/ingest"
db="$tmp/crash.db"
: >"$tmp/acked"
for cycle in $(seq 1 "$CYCLES"); do
  acks="$tmp/acked.$cycle"
  ${runner[@]+"${runner[@]}"} "$prog" log "$db" "$endpoint" sync "$cycle" 3 >>"$acks" 2>"$tmp/child.log" &
  cpid=$!
  # Wait (at most 30 s) until the file is open, then let it log for a random while.
  for _ in $(seq 1 300); do
    grep -q '^opened$' "$acks" && break
    kill -0 "$cpid" 2>/dev/null || break
    sleep 0.1
  done
  sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", 0.3 + 1.2 * r / 32767 }')"
  if ! kill -0 "$cpid" 2>/dev/null; then
    echo "FAIL: the child ended before the kill (cycle $cycle):" >&2
    cat "$tmp/child.log" >&2
    exit 1
  fi
  kill -KILL "$cpid"
  wait "$cpid" 2>/dev/null || true
  cpid=""
  grep -v '^opened$' "$acks" >>"$tmp/acked" || true
  echo "cycle $cycle: $(grep -vc '^opened$' "$acks") records acknowledged before SIGKILL"
done
timeout 120 ${runner[@]+"${runner[@]}"} "$prog" drain "$db" "$endpoint" 60000 >"$tmp/drain.log" ||
  { cat "$tmp/drain.log" "$tmp/child.log" >&2; echo "FAIL: the drain did not deliver everything" >&2; exit 1; }
tail -1 "$tmp/drain.log"
stop_receiver
# Every acknowledged (cycle, n) must be among the received records.
awk '
  FNR == NR { if (NF == 3) { acked[$1 " " $2] = 1; nacked++ } next }
  match($0, /"data":\{"tag":[0-9]+,"n":[0-9]+\}/) {
    split(substr($0, RSTART, RLENGTH), p, /[:,}]/)
    got[p[3] " " p[5]] = 1
  }
  END {
    for (k in acked) if (!(k in got)) { missing++; if (missing <= 5) print "lost: cycle/n " k }
    if (nacked == 0) { print "FAIL: no record was acknowledged"; exit 1 }
    if (missing) { printf "FAIL: %d of %d acknowledged records lost\n", missing, nacked; exit 1 }
    printf "kill -9: %d acknowledged sync-mode records, all received\n", nacked
  }' "$tmp/acked" "$out"
