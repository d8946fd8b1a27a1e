#!/usr/bin/env bash
# What reaches the disk when (docs/reference.md, configuration and 4): an LD_PRELOAD shim (count_fsync.c) logs every
# fsync edgebuf makes on files in a temporary directory, while probe.c logs through it.
#   async, commit.sync_interval_ms=200: while commits happen, fsyncs of the -wal come at most
#     one per 200 ms and at most ~200 ms + commit.interval_ms apart; idle, none at all;
#   async, commit.sync_interval_ms=0: every commit is fsync'd (one every commit.interval_ms);
#   sync: every record whose edgebuf_log returned was fsync'd (50 logs, one thread: >= 50);
#   a new buffer file: its directory is fsync'd (the new names survive a power cut).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet --lib
ln -sf libedgebuf.so target/release/libedgebuf.so.0
out=target/fsync-tests
mkdir -p "$out"
cc -shared -fPIC -O1 -Wall -Wextra -Werror -o "$out/count_fsync.so" tests/fsync/count_fsync.c -ldl
cc -std=c11 -O1 -Wall -Wextra -Werror -Iinclude -o "$out/probe" tests/fsync/probe.c \
  -Ltarget/release -ledgebuf "-Wl,-rpath,$PWD/target/release"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

run() { # NAME ARGS...: the probe under the shim; its phases in $tmp/NAME.out, fsyncs in NAME.log
  local name=$1
  shift
  mkdir -p "$tmp/$name"
  FSYNC_FILTER="$tmp/$name" FSYNC_LOG="$tmp/$name.log" LD_PRELOAD="$PWD/$out/count_fsync.so" \
    timeout 60 "$out/probe" "$1" "$tmp/$name/buf.db" "$2" >"$tmp/$name.out"
  touch "$tmp/$name.log"
}
run interval async 200
run every async 0
run sync sync 50

python3 - "$tmp" <<'PY'
import sys
tmp = sys.argv[1]
def load(name):
    phases = {}
    for line in open(f"{tmp}/{name}.out"):
        t, ev = line.split()[:2]
        phases[ev] = int(t)
    syncs = []
    for line in open(f"{tmp}/{name}.log"):
        t, path = line.rstrip("\n").split(" ", 1)
        syncs.append((int(t), path))
    return phases, syncs
fail = []
ms = 1_000_000

# async, 200 ms
p, s = load("interval")
wal = [t for t, path in s if path.endswith("buf.db-wal")]
during = [t for t in wal if p["opened"] <= t <= p["logged"]]
gaps = [(b - a) / ms for a, b in zip(during, during[1:])]
print(f"async, sync interval 200 ms: {len(during)} -wal fsyncs in {(p['logged'] - p['opened']) / 1e9:.1f} s of "
      f"logging, gaps {min(gaps, default=0):.0f}..{max(gaps, default=0):.0f} ms")
if not 5 <= len(during) <= 12:
    fail.append(f"{len(during)} fsyncs while logging for 2 s with a 200 ms interval (want 5..12)")
if gaps and min(gaps) < 180:
    fail.append(f"two fsyncs {min(gaps):.0f} ms apart (at most one per 200 ms)")
if gaps and max(gaps) > 400:
    fail.append(f"{max(gaps):.0f} ms without an fsync while logging (want <= ~220)")
idle = [(t, path) for t, path in s if p["logged"] + 350 * ms <= t <= p["idle"]]
print(f"  idle for {(p['idle'] - p['logged']) / 1e9:.1f} s: {len(idle)} fsyncs after the last commit was made durable")
if idle:
    fail.append(f"{len(idle)} fsyncs while idle: {idle[:3]}")
dirsync = [path for t, path in s if t <= p["opened"] and path == f"{tmp}/interval"]
print(f"  new buffer file: {len(dirsync)} fsync(s) of its directory before open returned")
if not dirsync:
    fail.append("the directory of a new buffer file was not fsync'd")

# async, 0 ms: every commit
p, s = load("every")
during = [t for t, path in s if path.endswith("buf.db-wal") and p["opened"] <= t <= p["logged"]]
print(f"async, sync interval 0: {len(during)} -wal fsyncs in 2 s of commits every 20 ms")
if len(during) < 40:
    fail.append(f"sync interval 0 fsync'd only {len(during)} commits in 2 s (want >= 40)")

# sync mode
p, s = load("sync")
during = [t for t, path in s if path.endswith("buf.db-wal") and p["opened"] <= t <= p["logged"]]
print(f"durability=sync: {len(during)} -wal fsyncs for 50 records logged one at a time")
if len(during) < 50:
    fail.append(f"sync mode: {len(during)} fsyncs for 50 acknowledged records")

if fail:
    print("FAIL: " + "; ".join(fail))
    sys.exit(1)
print("fsync test: passed")
PY
