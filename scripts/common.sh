# Shell helpers shared by the demo and the example tests (source it; bash).

# Builds the release library and the SONAME link programs linked with -ledgebuf look for.
build_lib() {
  cargo build --release --lib --quiet
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
