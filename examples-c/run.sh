#!/usr/bin/env bash
# Builds the C example shared and static, runs both against the reference receiver on
# 127.0.0.1 and checks that every prediction arrived exactly once.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh
build_lib
make -s -C examples-c inference static
tmp=$(mktemp -d)
rpid=""
cleanup() { [ -n "$rpid" ] && kill "$rpid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
port=$(free_port)
start_receiver "$port" "$tmp/received.ndjson"
for bin in inference inference-static; do
  ./examples-c/$bin "http://127.0.0.1:$port/ingest" "$tmp/$bin.db" 300 0 >"$tmp/$bin.log"
  grep '^summary:' "$tmp/$bin.log"
done
python3 - "$tmp/received.ndjson" <<'PY'
import json, sys
env = [json.loads(l) for l in open(sys.argv[1])]
by_inst = {}
for e in env:
    by_inst.setdefault(e["id"].split("-")[0], []).append(e["seq"])
assert len(by_inst) == 2, f"expected 2 buffers, got {len(by_inst)}"
for inst, seqs in by_inst.items():
    assert sorted(seqs) == list(range(1, 301)), f"{inst}: {len(seqs)} records"
assert all(e["source"] == "demo-cam-01" and "scores" in e["data"] for e in env)
print(f"examples-c: {len(env)} predictions received exactly once from 2 builds (shared, static)")
PY
