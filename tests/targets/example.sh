#!/usr/bin/env bash
# example.sh INFERENCE: runs the C example built for a target (examples-c/inference.c) under
# $EDGEBUF_TARGET_RUNNER (qemu-user, or empty for the host's architecture) against the host's
# reference receiver on 127.0.0.1, and checks that every prediction arrived exactly once.
set -euo pipefail
prog=$1
cd "$(dirname "$0")/../.."
. scripts/common.sh
read -r -a runner <<<"${EDGEBUF_TARGET_RUNNER:-}"
COUNT=${COUNT:-300}
with_receiver
timeout 120 ${runner[@]+"${runner[@]}"} "$prog" --endpoint "http://127.0.0.1:$port/ingest" \
  --path "$tmp/example.db" --count "$COUNT" --rate 0 --quiet >"$tmp/example.log" ||
  { cat "$tmp/example.log" >&2; exit 1; }
grep '^summary:' "$tmp/example.log"
stop_receiver
check_example_received "$out" "$COUNT" 1 "${runner[0]:-native}"
