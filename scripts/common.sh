# Shell helpers shared by the demo and the example tests (source it; bash).

# Builds the release library and the SONAME link programs linked with -ledgebuf look for.
# Not --quiet: on a fresh machine the first build takes minutes, and cargo's lines show progress.
build_lib() {
  cargo build --release --lib
  ln -sf libedgebuf.so target/release/libedgebuf.so.0
}

# The reference receiver, `edgebuf receive` (build it with
# `cargo build --release --bin edgebuf`), driven through these globals:
#   cli      the edgebuf binary (default target/release/edgebuf)
#   out      the file it appends each new envelope to
#   tmp      where its stderr goes, one receiver.N.log per start (N counts starts)
#   control  optional: a control file that makes it fail while it says "down"
# start_receiver PORT: starts it in the background; once it listens, sets rpid and port
# (PORT 0 = a free one). The port of a stopped receiver may be held for a moment: a few tries.
receiver_runs=0
start_receiver() {
  local want=$1 try log
  local ctl=()
  [ -n "${control:-}" ] && ctl=(--control-file "$control")
  for try in 1 2 3 4 5; do
    receiver_runs=$((receiver_runs + 1))
    log="$tmp/receiver.$receiver_runs.log"
    "${cli:-target/release/edgebuf}" receive --listen "127.0.0.1:$want" --out "$out" \
      "${ctl[@]}" 2>"$log" &
    rpid=$!
    port=""
    for _ in $(seq 1 100); do
      port=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' "$log")
      [ -n "$port" ] && return 0
      kill -0 "$rpid" 2>/dev/null || break
      sleep 0.05
    done
    kill "$rpid" 2>/dev/null || true
    wait "$rpid" 2>/dev/null || true
    rpid=""
    sleep 0.2
  done
  echo "the receiver did not start on 127.0.0.1:$want:" >&2
  cat "$log" >&2
  return 1
}

# stop_receiver: SIGTERM (it prints its counters to its log), a bounded wait, then SIGKILL.
stop_receiver() {
  kill -TERM "$rpid"
  for _ in $(seq 1 100); do kill -0 "$rpid" 2>/dev/null || break; sleep 0.05; done
  kill -KILL "$rpid" 2>/dev/null || true
  wait "$rpid" 2>/dev/null || true
  rpid=""
}

# receiver_total NAME: the sum of counter NAME (duplicates, failed, ...) over every stopped
# receiver's log line "edgebuf receive: stopped; ... NAME=N".
receiver_total() {
  cat "$tmp"/receiver.*.log | sed -n "s/.*stopped;.* $1=\([0-9]*\).*/\1/p" |
    awk '{ s += $1 } END { print s + 0 }'
}

# nap SECONDS: sleeps, but returns early once the loop under test ($lpid) has ended (it
# failed: there is no outage left to play).
nap() {
  local end
  end=$(awk -v s="$1" 'BEGIN { printf "%d", s * 10 }')
  for _ in $(seq 1 "$end"); do kill -0 "$lpid" 2>/dev/null || return 0; sleep 0.1; done
}

# check_onnx_run LOOP SOURCE NAME: checks an ONNX example's outage run and prints its summary.
# Reads what the loop LOOP printed ($tmp/loop.log, ending in "summary: key=value ..."), the
# records it logged ($tmp/logged.ndjson) and what the receiver wrote ($out); uses loop_status,
# py, COUNT, RATE, DOWN_FOR, STALL_MS and OUTAGE (kill, stop or fail; kill when unset). Returns 1
# when the loop failed, a prediction did not arrive exactly once with what was logged (source
# SOURCE; NAME labels the messages), edgebuf never saw the outage, or an iteration stalled.
check_onnx_run() {
  local loop=$1 source=$2 name=$3 summary fail=0 duplicates worst offline_iters
  summary=$(grep '^summary:' "$tmp/loop.log" | tail -1 || true)
  if [ -z "$summary" ]; then
    echo "FAIL: $loop printed no summary (exit status $loop_status)" >&2
    return 1
  fi
  if [ "$loop_status" -ne 0 ]; then
    echo "FAIL: $loop exited with status $loop_status" >&2
    fail=1
  fi
  field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" ${summary#summary:}"; }
  duplicates=$(receiver_total duplicates)

  # Every logged record exactly once by envelope id, with what was logged: the scores compared
  # as numbers and the data bytes compared verbatim (edgebuf never re-encodes them).
  "$py" scripts/check_received.py "$tmp/logged.ndjson" "$out" "$COUNT" "$source" "$name" || fail=1

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
  if [ "${OUTAGE:-kill}" = stop ]; then
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
  return "$fail"
}

# check_example_received FILE COUNT BUILDS WHAT: the C example (examples-c/inference.c) ran
# BUILDS times, each with its own buffer file, logging COUNT predictions to the receiver that
# wrote FILE. Every instance must have seqs 1..COUNT exactly once, from the example's source,
# with the prediction in data. WHAT names the builds in the message.
check_example_received() {
  awk -v count="$2" -v builds="$3" -v what="$4" '
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
      if (k != builds) { printf "expected %d buffers, got %d\n", builds, k; bad++ }
      if (bad) { printf "examples-c: %d problems in the received records\n", bad; exit 1 }
      printf "examples-c: %d predictions received exactly once from %d build(s) (%s)\n", NR, builds, what
    }' "$1"
}

# with_receiver: for a test script, a temporary directory $tmp and the reference receiver
# started on a free port ($port, $rpid), writing each new envelope to $out; both go away at
# exit (receiver_cleanup, which a script's own EXIT trap can call after its own cleanup).
with_receiver() {
  tmp=$(mktemp -d)
  rpid=""
  out="$tmp/received.ndjson"
  trap receiver_cleanup EXIT
  start_receiver 0
}

receiver_cleanup() {
  if [ -n "${rpid:-}" ]; then kill "$rpid" 2>/dev/null || true; wait "$rpid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
