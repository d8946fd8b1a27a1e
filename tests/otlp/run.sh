#!/usr/bin/env bash
# The OTLP interop test: edgebuf delivers OTLP/HTTP logs to a real OpenTelemetry Collector
# (target/otelcol, from tests/otlp/build-collector.sh), whose OTLP/HTTP exporter forwards them
# as OTLP/JSON to a test sink (sink.py); check.py then holds what reached the sink to what was
# logged. Everything listens on 127.0.0.1, on ports the kernel picks.
#
# For each format (otlp_json, otlp_proto) and compression (gzip and zstd; the self-test skips
# zstd without the zstd program), three scenarios, each on a fresh buffer, collector and sink:
#   plain    delivery as it comes;
#   restart  the collector is killed (SIGKILL) during delivery and started again on its port;
#   sink503  the sink answers 503 for a few seconds during delivery (the exporter has no queue
#            and no retry, so the failure reaches edgebuf as an error and it retries).
# Each must deliver every record, once or more with the same id (duplicates are reported), with
# its body, resource and scope as docs/reference.md maps them. The logging program is tests/c/logger.c (`logger send`), against the library
# in EDGEBUF_LIB_DIR (default target/release, built with cargo when missing there).
#
#   run.sh               the test of the library
#   run.sh --self-test   the test of the harness: check.py's stand-in client posts hand-encoded
#                        OTLP (JSON and protobuf) through the same scenarios, then the checker
#                        must reject changed copies of what the sink got
#
# Environment: OTLP_RECORDS (records per case, default 2000), OTELCOL (the collector binary),
# EDGEBUF_LIB_DIR, OTLP_KEEP=1 keeps the work directory. Prints "N passed, N failed" last;
# exits non-zero when a case failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/otlp"
MODE=library
case "${1:-}" in
  --self-test) MODE=self ;;
  "") ;;
  *) echo "usage: $0 [--self-test]" >&2; exit 2 ;;
esac
N="${OTLP_RECORDS:-2000}"
OTELCOL="${OTELCOL:-$ROOT/target/otelcol}"
LIBDIR="${EDGEBUF_LIB_DIR:-$ROOT/target/release}"
SOURCE=otlp-test
RES_KEY=deployment.environment
RES_VAL=edgebuf-ci
CASE_TIMEOUT=120 # seconds a client may take to deliver one case

WORK="$(mktemp -d /tmp/edgebuf-otlp.XXXXXX)"
SINK_PID="" COL_PID="" CLIENT_PID=""
stop_pid() { # PID [SIGNAL]: signals it and waits for it, at most 10 s, then SIGKILL
  local pid="$1" sig="${2:-TERM}" i
  [[ -n "$pid" ]] || return 0
  kill "-$sig" "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  stop_pid "$CLIENT_PID"
  stop_pid "$COL_PID"
  stop_pid "$SINK_PID"
  if [[ "${OTLP_KEEP:-}" == 1 ]]; then
    echo "work directory kept: $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "otlp: $*" >&2; exit 1; }

[[ -x "$OTELCOL" ]] || die "no collector at $OTELCOL: run tests/otlp/build-collector.sh first"

# ---- the logging program: tests/c/logger.c (`logger send`), settings from EDGEBUF_* variables
LOGGER="$WORK/logger"
if [[ "$MODE" == library ]]; then
  if [[ ! -e "$LIBDIR/libedgebuf.so" ]]; then
    [[ -z "${EDGEBUF_LIB_DIR:-}" ]] || die "no libedgebuf.so in EDGEBUF_LIB_DIR=$LIBDIR"
    echo "--- cargo build --release --lib"
    (cd "$ROOT" && cargo build --release --lib)
  fi
  # The SONAME is libedgebuf.so.0; programs linked with -ledgebuf look for that name.
  ln -sf libedgebuf.so "$LIBDIR/libedgebuf.so.0"
  "${CC:-cc}" -std=c11 -Wall -Wextra -Werror -O1 -I "$ROOT/include" "$ROOT/tests/c/logger.c" \
    -o "$LOGGER" -L "$LIBDIR" -ledgebuf "-Wl,-rpath,$LIBDIR" -lpthread -ldl -lm
  COMPRESSIONS=(gzip zstd)
  FORMATS=(otlp_json otlp_proto)
else
  COMPRESSIONS=(gzip)
  if command -v zstd >/dev/null; then
    COMPRESSIONS+=(zstd)
  else
    echo "otlp: zstd cases skipped: the stand-in client compresses with the zstd program, not installed"
  fi
  FORMATS=(json proto)
fi

RECORDS="$WORK/records.jsonl"
python3 "$HERE/check.py" gen "$N" "$RECORDS"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() { # PORT SECONDS PID: waits until PORT accepts connections while PID lives
  local port="$1" secs="$2" pid="$3" i
  for ((i = 0; i < secs * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || return 1
    if python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.5).close()' "$port" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}
sink_requests() { # DIR: requests the sink kept so far
  find "$1/out" -name '*.json' 2>/dev/null | wc -l
}
wait_requests() { # DIR COUNT SECONDS: waits until the sink kept COUNT requests
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    (($(sink_requests "$1") >= $2)) && return 0
    sleep 0.1
  done
  return 1
}

start_sink() { # DIR
  python3 "$HERE/sink.py" "$1/out" "$1/sink.port" "$1/control" 2>>"$1/sink.err" &
  SINK_PID=$!
  local i
  for ((i = 0; i < 100; i++)); do
    [[ -s "$1/sink.port" ]] && return 0
    sleep 0.1
  done
  return 1
}
start_collector() { # DIR PORT
  "$OTELCOL" --config "$1/otelcol.yaml" >>"$1/otelcol.log" 2>&1 &
  COL_PID=$!
  wait_port "$2" 30 "$COL_PID"
}
write_config() { # DIR PORT SINK_PORT
  cat >"$1/otelcol.yaml" <<YAML
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:$2
exporters:
  otlp_http:
    logs_endpoint: http://127.0.0.1:$3/v1/logs
    encoding: json
    compression: none
    timeout: 5s
    # No queue and no retry: a failure of the sink reaches edgebuf as an error response.
    sending_queue:
      enabled: false
    retry_on_failure:
      enabled: false
service:
  telemetry:
    logs:
      level: warn
    metrics:
      level: none
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [otlp_http]
YAML
}

run_case() { # FORMAT COMPRESSION SCENARIO; returns non-zero on failure
  local fmt="$1" comp="$2" scen="$3"
  local dir="$WORK/$fmt-$comp-$scen"
  mkdir -p "$dir/out"
  echo up >"$dir/control"
  start_sink "$dir" || { echo "sink did not start"; return 1; }
  local sport port
  sport=$(cat "$dir/sink.port")
  port=$(free_port)
  write_config "$dir" "$port" "$sport"
  if ! start_collector "$dir" "$port"; then
    echo "collector did not start:"; tail -20 "$dir/otelcol.log"; return 1
  fi
  local endpoint="http://127.0.0.1:$port/v1/logs" since_ms
  since_ms=$(($(date +%s) * 1000))
  if [[ "$MODE" == library ]]; then
    local res_var="EDGEBUF_OTLP_RESOURCE_$(echo "$RES_KEY" | tr 'a-z.' 'A-Z_')"
    env EDGEBUF_FORMAT="$fmt" EDGEBUF_HTTP_COMPRESSION="$comp" "$res_var=$RES_VAL" \
      EDGEBUF_SOURCE_ID="$SOURCE" EDGEBUF_BATCH_MAX_RECORDS=50 EDGEBUF_HTTP_TIMEOUT_MS=5000 \
      "$LOGGER" send "$dir/buffer.db" "$endpoint" "$RECORDS" 1500 60000 \
      >"$dir/client.log" 2>&1 &
  else
    python3 "$HERE/check.py" post "$RECORDS" "$endpoint" --format "$fmt" --compression "$comp" \
      --batch 50 --pace-ms 60 --deadline-s 60 --source "$SOURCE" --resource "$RES_KEY=$RES_VAL" \
      >"$dir/client.log" 2>&1 &
  fi
  CLIENT_PID=$!
  local ok=1
  case "$scen" in
    plain) ;;
    restart)
      if ! wait_requests "$dir" 3 30; then
        echo "restart: the sink got no request within 30 s"; ok=0
      else
        kill -0 "$CLIENT_PID" 2>/dev/null || { echo "restart: delivery was over before the kill"; ok=0; }
        stop_pid "$COL_PID" KILL
        local before
        before=$(sink_requests "$dir")
        sleep 1
        if ! start_collector "$dir" "$port"; then
          echo "restart: the collector did not start again:"; tail -20 "$dir/otelcol.log"; ok=0
        elif ! wait_requests "$dir" $((before + 1)) 30; then
          echo "restart: nothing reached the sink after the restart"; ok=0
        else
          echo "restart: collector killed after $before requests, restarted on port $port"
        fi
      fi
      ;;
    sink503)
      if ! wait_requests "$dir" 3 30; then
        echo "sink503: the sink got no request within 30 s"; ok=0
      else
        kill -0 "$CLIENT_PID" 2>/dev/null || { echo "sink503: delivery was over before the failure"; ok=0; }
        echo down >"$dir/control"
        sleep 3
        echo up >"$dir/control"
        local refused
        refused=$(grep -c '^503' "$dir/sink.log" || true)
        if ((refused == 0)); then
          echo "sink503: no request reached the failing sink"; ok=0
        else
          echo "sink503: the sink answered 503 to $refused requests"
        fi
      fi
      ;;
  esac
  local i rc=""
  for ((i = 0; i < CASE_TIMEOUT * 10; i++)); do
    if ! kill -0 "$CLIENT_PID" 2>/dev/null; then
      rc=0
      wait "$CLIENT_PID" || rc=$?
      break
    fi
    sleep 0.1
  done
  if [[ -z "$rc" ]]; then
    echo "the client did not finish within $CASE_TIMEOUT s"
    stop_pid "$CLIENT_PID"
    rc=124
  fi
  CLIENT_PID=""
  grep -E '^(post|sent|drain|logged|log |open)' "$dir/client.log" || true
  ((rc == 0)) || { echo "client exit status $rc:"; tail -5 "$dir/client.log"; ok=0; }
  stop_pid "$COL_PID"; COL_PID=""
  stop_pid "$SINK_PID"; SINK_PID=""
  if [[ -s "$dir/sink.err" ]]; then
    echo "sink stderr:"; head -5 "$dir/sink.err"
  fi
  python3 "$HERE/check.py" verify "$RECORDS" "$dir/out" --source "$SOURCE" \
    --resource "$RES_KEY=$RES_VAL" --since-ms "$since_ms" || ok=0
  if [[ "$MODE" == self && "$scen" == plain && "$ok" == 1 ]]; then
    python3 "$HERE/check.py" negative "$RECORDS" "$dir/out" --source "$SOURCE" \
      --resource "$RES_KEY=$RES_VAL" --since-ms "$since_ms" || ok=0
  fi
  if ((ok == 0)); then
    echo "collector log (last lines):"; tail -5 "$dir/otelcol.log" || true
    return 1
  fi
  return 0
}

passed=0 failed=0
for fmt in "${FORMATS[@]}"; do
  for comp in "${COMPRESSIONS[@]}"; do
    for scen in plain restart sink503; do
      echo "=== $MODE $fmt $comp $scen ($N records)"
      start=$SECONDS
      if run_case "$fmt" "$comp" "$scen"; then
        echo "--- ok ($((SECONDS - start)) s)"
        passed=$((passed + 1))
      else
        echo "--- FAILED ($((SECONDS - start)) s)"
        failed=$((failed + 1))
      fi
    done
  done
done
echo "otlp interop, $MODE mode:"
echo "otlp: $passed passed, $failed failed"
((failed == 0))
