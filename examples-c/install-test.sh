#!/usr/bin/env bash
# Installs edgebuf into a temporary prefix with `make install`, builds the C example against
# the installed copy with CMake (pkg-config) and statically with `pkg-config --static`, and runs
# both against the reference receiver.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh
tmp=$(mktemp -d)
rpid=""
cleanup() { [ -n "$rpid" ] && kill "$rpid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
# The README's command, exactly, with HOME in the temporary directory (rustup and cargo keep
# finding their own homes).
(
  export RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
  export HOME="$tmp"
  make install PREFIX="$HOME/.local"
) >/dev/null
prefix="$tmp/.local"
test -L "$prefix/lib/libedgebuf.so.0" && test -f "$prefix/lib/libedgebuf.a" && test -f "$prefix/include/edgebuf.h"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
cmake -S examples-c/cmake -B "$tmp/build" -DCMAKE_BUILD_RULE_MESSAGES=OFF -DCMAKE_INSTALL_RPATH="$prefix/lib" \
  -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON >/dev/null
cmake --build "$tmp/build" >/dev/null
readelf -d "$tmp/build/inference" | grep -q 'NEEDED.*libedgebuf.so.0'
# Static: the archive plus the private libraries that edgebuf.pc lists.
cc -std=c11 -Wall -Wextra -Werror -o "$tmp/inference-static" examples-c/inference.c \
  $(pkg-config --cflags edgebuf) "$prefix/lib/libedgebuf.a" \
  $(pkg-config --libs --static edgebuf | sed 's/-L[^ ]*//g; s/-ledgebuf//')
cargo build --release --bin edgebuf --quiet
out="$tmp/received.ndjson"
start_receiver 0
"$tmp/build/inference" "http://127.0.0.1:$port/ingest" "$tmp/a.db" 100 0 | grep '^summary:'
"$tmp/inference-static" "http://127.0.0.1:$port/ingest" "$tmp/b.db" 100 0 | grep '^summary:'
stop_receiver
n=$(wc -l < "$out")
[ "$n" -eq 200 ] || { echo "expected 200 records, got $n" >&2; exit 1; }
echo "install-test: installed to a prefix; CMake (pkg-config) and static consumers delivered $n records"
