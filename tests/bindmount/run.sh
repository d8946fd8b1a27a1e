#!/usr/bin/env bash
# One owner per file, through a bind mount: the buffer file bind-mounted onto a second name (as
# Docker mounts a single file) is the same inode, so while one process logs through the first
# name, an open through the second is EDGEBUF_ERR_LOCKED, and once the owner is gone it opens
# with everything the owner left. Runs in a private mount namespace (unshare; as root, or as
# a user through a user namespace), so no mount outlives the test.
# Before edgebuf locked the file's own inode, both names opened: 40,000 logs returned OK and
# 20,000 rows remained.
set -euo pipefail
trap 'echo "FAIL: $0 line $LINENO: $BASH_COMMAND" >&2' ERR
cd "$(dirname "$0")/../.."
if [ "${1:-}" != --inside ]; then
  cargo build --release --quiet --lib
  ln -sf libedgebuf.so target/release/libedgebuf.so.0
  mkdir -p target/bindmount
  cc -std=c11 -O1 -Wall -Wextra -Werror -Iinclude -o target/bindmount/logger tests/c/logger.c \
    -Ltarget/release -ledgebuf "-Wl,-rpath,$PWD/target/release" -lpthread
  as_root=()
  [ "$(id -u)" -ne 0 ] && as_root=(--map-root-user)
  if ! unshare --mount "${as_root[@]}" true 2>/dev/null; then
    echo "FAIL: cannot make a mount namespace here (unshare --mount${as_root:+ --map-root-user})" >&2
    exit 1
  fi
  exec unshare --mount --propagation private "${as_root[@]}" "$0" --inside
fi

logger=$PWD/target/bindmount/logger
tmp=$(mktemp -d)
lpid=""
cleanup() {
  [ -n "$lpid" ] && kill -KILL "$lpid" 2>/dev/null && wait "$lpid" 2>/dev/null
  umount "$tmp/b/buf.db" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
mkdir "$tmp/a" "$tmp/b"
# Nothing listens on the endpoint: records stay pending, which is what is counted at the end.
endpoint="http://127.0.0.1:9/ingest"
"$logger" check "$tmp/a/buf.db" >/dev/null
touch "$tmp/b/buf.db"
mount --bind "$tmp/a/buf.db" "$tmp/b/buf.db"
[ "$(stat -c %i "$tmp/a/buf.db")" = "$(stat -c %i "$tmp/b/buf.db")" ]

# The owner logs (async, 2 threads) through the first name, acknowledgements to a file.
: >"$tmp/acks"
EDGEBUF_COMMIT_INTERVAL_MS=100 "$logger" log "$tmp/a/buf.db" "$endpoint" async 1 2 >>"$tmp/acks" &
lpid=$!
for _ in $(seq 1 100); do grep -q '^opened' "$tmp/acks" && break; sleep 0.05; done
grep -q '^opened' "$tmp/acks" || { echo "FAIL: the owner did not open" >&2; exit 1; }
sleep 0.5
# Through the bind mount: LOCKED, twice (the second name's .lock is its own file, so only the
# lock on the inode can stop this), and the owner keeps logging.
for i in 1 2; do
  if got=$("$logger" check "$tmp/b/buf.db"); then
    echo "FAIL: the bind-mounted name opened while another process owns the file: $got" >&2
    exit 1
  fi
  echo "$got" | grep -q '^open EDGEBUF_ERR_LOCKED: .*b/buf.db' ||
    { echo "FAIL: expected LOCKED naming the path, got: $got" >&2; exit 1; }
done
# Records acknowledged by now are committed 100 ms later (commit.interval_ms), well before the
# owner ends.
acked=$(grep -c '^1 ' "$tmp/acks" || true)
sleep 0.5
kill -KILL "$lpid"; wait "$lpid" 2>/dev/null || true; lpid=""
# The owner is gone (killed, no close). Its last commits are in its name's -wal (a bind
# mount of the file alone does not carry the -wal), so the name it wrote through opens first:
# it holds those records plus the one of the first check, and its close checkpoints them into
# the file. Then the bind-mounted name opens with all of them, plus the one that check logged.
got=$("$logger" check "$tmp/a/buf.db")
pending=$(echo "$got" | sed -n 's/^pending_at_open //p')
[ -n "$pending" ] && [ "$pending" -gt "$acked" ] ||
  { echo "FAIL: after the owner was killed, its file held ${pending:-no} records; $acked were committed: $got" >&2; exit 1; }
got=$("$logger" check "$tmp/b/buf.db")
[ "$got" = "pending_at_open $((pending + 1))" ] ||
  { echo "FAIL: the bind-mounted name then found '$got', expected pending_at_open $((pending + 1))" >&2; exit 1; }
echo "bindmount: LOCKED through the bind mount while owned (twice); after the owner was killed both names opened in turn with every committed record ($pending, $acked acknowledged 0.5 s before the kill)"
