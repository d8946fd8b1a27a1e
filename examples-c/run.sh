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

with_receiver
for bin in inference inference-static; do
  timeout 50 ./examples-c/$bin --endpoint "http://127.0.0.1:$port/ingest" --path "$tmp/$bin.db" \
    --count "$COUNT" --rate 0 >"$tmp/$bin.log" || { cat "$tmp/$bin.log" >&2; exit 1; }
  grep '^summary:' "$tmp/$bin.log"
done
stop_receiver
grep 'stopped;' "$tmp"/receiver.*.log

check_example_received "$tmp/received.ndjson" "$COUNT" 2 "shared, static"
