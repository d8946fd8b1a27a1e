#!/usr/bin/env bash
# The static archive exports only edgebuf_* symbols, and links together with the system's own
# libsqlite3 into one working program.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s static >/dev/null
a=target/release/dist/libedgebuf.a
others=$(readelf -sW "$a" | awk '$5=="GLOBAL" && $7!="UND" {print $8}' | grep -v '^edgebuf_' || true)
if [ -n "$others" ]; then
  echo "libedgebuf.a exports more than edgebuf_*:" >&2
  echo "$others" | head >&2
  exit 1
fi
echo "static-test: libedgebuf.a exports $(readelf -sW "$a" | awk '$5=="GLOBAL" && $7!="UND"' | wc -l) symbols, all edgebuf_*"
# The shared library too: rustc's own version script leaves only the #[no_mangle] functions.
so_others=$(nm -D --defined-only target/release/libedgebuf.so | awk '{ print $3 }' | grep -v '^edgebuf_' || true)
if [ -n "$so_others" ]; then
  echo "libedgebuf.so exports more than edgebuf_*:" >&2
  echo "$so_others" | head >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cc -std=c11 -Wall -Wextra -Werror -Iinclude -o "$tmp/sqlite_clash" examples-c/sqlite_clash.c \
  "$a" -lsqlite3 -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
"$tmp/sqlite_clash" "$tmp"
