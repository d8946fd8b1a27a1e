#!/usr/bin/env bash
# Builds and tests edgebuf for the device targets of README, Embedded targets, from an x86_64 Debian machine:
#
#   scripts/targets.sh build TARGET   the release library of TARGET (profile release-small)
#                                     in target/dist/TARGET/: lib/libedgebuf.so (+ .so.0),
#                                     lib/libedgebuf.a (only edgebuf_* global), include/
#   scripts/targets.sh test TARGET    on that architecture (qemu-user for ARM): exported
#                                     symbols and size, the C API test, the 64-bit values
#                                     test, the kill -9 test and the C example, each against a
#                                     receiver on this host
#   scripts/targets.sh all            build and test every target, then a table of the results
#   scripts/targets.sh list           the targets, one a line
#
# What each target needs (.ci/run installs it): the Rust target (rustup target add), the C
# cross compiler and its libc (the bundled SQLite and ring are C), qemu-user to run it.
# The x86_64 glibc build links with GNU ld on purpose: rustc links x86_64 with LLD by default
# (the test command's build), so both linkers are exercised on every run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# The target table: one line per target.
#   triple | C compiler | binutils prefix | qemu-user | sysroot for qemu -L | libraries built
#   | Debian architecture and multiarch directory | Python wheel platform (- where none is made)
TARGETS="
x86_64-unknown-linux-gnu      | gcc                     |                      |              |                          | shared static | amd64 x86_64-linux-gnu        | x86_64
aarch64-unknown-linux-gnu     | aarch64-linux-gnu-gcc   | aarch64-linux-gnu-   | qemu-aarch64 | /usr/aarch64-linux-gnu   | shared static | arm64 aarch64-linux-gnu       | aarch64
armv7-unknown-linux-gnueabihf | arm-linux-gnueabihf-gcc | arm-linux-gnueabihf- | qemu-arm     | /usr/arm-linux-gnueabihf | shared static | armhf arm-linux-gnueabihf     | -
x86_64-unknown-linux-musl     | musl-gcc                |                      |              |                          | static        | - -                           | -
"
# A stripped libedgebuf.so may be at most this big (README, Embedded targets: 3 MB).
MAX_SO_BYTES=3000000
# C code (SQLite, ring, zstd) of a release library: optimised for size, and without unwind
# tables, which only Rust frames need (no panic unwinds through C: rusqlite catches them in
# callbacks). zstd with only the block compressor of level 1 (fast), the level of
# http.compression=zstd (src/http/mod.rs): the others (dfast, greedy to btultra2) would add
# about 160 KB to the .so (x86_64: 2,984,552 bytes with all of them, the limit being 3,000,000);
# another level would fall back to fast.
RELEASE_CFLAGS="-Os -fno-asynchronous-unwind-tables -fno-unwind-tables"
for zstd_strategy in DFAST GREEDY LAZY LAZY2 BTLAZY2 BTOPT BTULTRA; do
  RELEASE_CFLAGS+=" -DZSTD_EXCLUDE_${zstd_strategy}_BLOCK_COMPRESSOR"
done

# target_info TRIPLE: sets cc, bp (binutils prefix), qemu, sysroot, kinds, deb_arch, multiarch,
# wheel_arch, dist, runner.
target_info() {
  local line
  line=$(printf '%s\n' "$TARGETS" | awk -F'|' -v t="$1" '{ k = $1; gsub(/ /, "", k) } k == t')
  if [ -z "$line" ]; then
    echo "unknown target $1; one of:" >&2
    list >&2
    exit 2
  fi
  IFS='|' read -r _ cc bp qemu sysroot kinds debian wheel <<<"$line"
  cc=$(echo $cc) bp=$(echo $bp) qemu=$(echo $qemu) sysroot=$(echo $sysroot) kinds=$(echo $kinds)
  read -r deb_arch multiarch <<<"$debian"
  wheel_arch=$(echo $wheel)
  target=$1 dist="$ROOT/target/dist/$1"
  runner=()
  [ -n "$qemu" ] && runner=("$qemu" -L "$sysroot")
  return 0
}

list() { printf '%s\n' "$TARGETS" | awk -F'|' 'NF > 1 { gsub(/ /, "", $1); print $1 }'; }

# cargo_env: the environment cargo needs for the current target (C cross compiler, archiver,
# linker; GNU ld for x86_64; qemu-user as the runner of `cargo test`).
cargo_env() {
  local up lo
  up=$(echo "$target" | tr 'a-z-' 'A-Z_') lo=${target//-/_}
  envs=("CC_$lo=$cc" "AR_$lo=${bp}ar")
  # The linker: the cross gcc. Not for musl, where rustc links its own self-contained musl
  # (a static-pie program); musl-gcc as the linker made the edgebuf tool a dynamic program
  # for /lib/ld-musl-x86_64.so.1 that crashed at start.
  [[ " $kinds " == *" shared "* ]] && envs+=("CARGO_TARGET_${up}_LINKER=$cc")
  [ "$target" = x86_64-unknown-linux-gnu ] && envs+=("CARGO_TARGET_${up}_RUSTFLAGS=-C linker-features=-lld")
  [ -n "$qemu" ] && envs+=("CARGO_TARGET_${up}_RUNNER=${runner[*]}")
  return 0
}

build() {
  local t=$1 out envs
  target_info "$t"
  cargo_env
  # Only the archive where the target links everything statically (musl: no cdylib).
  local types=(--crate-type staticlib)
  [[ " $kinds " == *" shared "* ]] && types+=(--crate-type cdylib)
  echo "--- build $t (cargo rustc -p edgebuf --profile release-small --lib --target $t ${types[*]})"
  env "${envs[@]}" "CFLAGS_${t//-/_}=$RELEASE_CFLAGS" \
    cargo rustc -p edgebuf --profile release-small --lib --target "$t" "${types[@]}"
  out="target/$t/release-small"
  rm -rf "$dist"
  mkdir -p "$dist/lib" "$dist/include"
  cp include/edgebuf.h "$dist/include/"
  if [[ " $kinds " == *" shared "* ]]; then
    cp "$out/libedgebuf.so" "$dist/lib/libedgebuf.so"
    ln -sf libedgebuf.so "$dist/lib/libedgebuf.so.0"
  fi
  local extra=()
  [[ "$t" == *-musl ]] && extra=("$(rustc --print sysroot)/lib/rustlib/$t/lib/self-contained/libunwind.a")
  scripts/localize-static.sh "$out/libedgebuf.a" "$dist/lib/libedgebuf.a" "$bp" ${extra[@]+"${extra[@]}"}
  # The edgebuf tool for the target, for the release archive and the Debian package.
  echo "--- build the edgebuf tool for $t (cargo build -p edgebuf-cli --profile release-small)"
  env "${envs[@]}" "CFLAGS_${t//-/_}=$RELEASE_CFLAGS" \
    cargo build -p edgebuf-cli --profile release-small --target "$t"
  mkdir -p "$dist/bin"
  cp "$out/edgebuf" "$dist/bin/edgebuf"
  echo "built $t: $(cd "$dist/lib" && find . -type f -printf "%f %s bytes  ")"
}

# glibc_floor: the newest GLIBC_ symbol version the shared library needs.
glibc_floor() {
  "${bp}objdump" -T "$dist/lib/libedgebuf.so" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1
}

# linker_of SO: "LLD" or "GNU ld", from the .comment section the linker leaves.
linker_of() {
  if "${bp}readelf" -p .comment "$1" | grep -q 'Linker: LLD'; then echo LLD; else echo "GNU ld"; fi
}

# check_symbols: only the header's edgebuf_* functions are global, in the .so and in the .a.
check_symbols() {
  local want got_so got_a
  want=$(grep -o 'edgebuf_[a-z_]*(' include/edgebuf.h | tr -d '(' | sort -u)
  if [ -f "$dist/lib/libedgebuf.so" ]; then
    got_so=$("${bp}nm" -D --defined-only "$dist/lib/libedgebuf.so" | awk '{ print $3 }' | sort -u)
    if [ "$got_so" != "$want" ]; then
      echo "FAIL: libedgebuf.so exports other symbols than the header's functions:" >&2
      diff <(echo "$want") <(echo "$got_so") >&2 || true
      return 1
    fi
    "${bp}readelf" -d "$dist/lib/libedgebuf.so" | grep -q 'SONAME.*\[libedgebuf\.so\.0\]' ||
      { echo "FAIL: the SONAME is not libedgebuf.so.0" >&2; return 1; }
  fi
  got_a=$("${bp}nm" -g --defined-only "$dist/lib/libedgebuf.a" | awk 'NF == 3 { print $3 }' | sort -u)
  if [ "$got_a" != "$want" ]; then
    echo "FAIL: libedgebuf.a has other global symbols than the header's functions:" >&2
    diff <(echo "$want") <(echo "$got_a") | head -20 >&2 || true
    return 1
  fi
  echo "symbols: $(echo "$want" | wc -l) edgebuf_* functions exported, nothing else"
}

# cc_target OUT SRC...: compiles a C test program for the target, against the .so (rpath to
# it), or statically against the .a where there is no .so (musl).
cc_target() {
  local out=$1 flags=(-std=c11 -O1 -g -Wall -Wextra -Werror -I "$dist/include")
  shift
  if [[ " $kinds " == *" shared "* ]]; then
    "$cc" "${flags[@]}" "$@" -o "$out" -L "$dist/lib" -ledgebuf "-Wl,-rpath,$dist/lib" -lpthread -ldl -lm
  else
    "$cc" "${flags[@]}" -static "$@" -o "$out" "$dist/lib/libedgebuf.a" -lpthread -lm
  fi
}

test_target() {
  local t=$1 bin size=""
  target_info "$t"
  [ -f "$dist/lib/libedgebuf.a" ] || { echo "build $t first: scripts/targets.sh build $t" >&2; exit 1; }
  bin="$ROOT/target/target-tests/$t"
  mkdir -p "$bin"
  echo "--- test $t${qemu:+ (under $qemu)}"
  check_symbols
  if [ -f "$dist/lib/libedgebuf.so" ]; then
    size=$(stat -c %s "$dist/lib/libedgebuf.so")
    echo "size: stripped libedgebuf.so $size bytes (limit $MAX_SO_BYTES); needs $(glibc_floor)"
    [ "$size" -le "$MAX_SO_BYTES" ] || { echo "FAIL: libedgebuf.so is over $MAX_SO_BYTES bytes" >&2; return 1; }
  fi
  cc_target "$bin/api_test" tests/c/api/*.c
  for src in tests/c/wide_test.c tests/c/logger.c examples-c/inference.c; do
    cc_target "$bin/$(basename "$src" .c)" "$src"
  done
  if [ -f "$dist/lib/libedgebuf.so" ]; then
    echo "linked by: $(linker_of "$dist/lib/libedgebuf.so")"
  elif "${bp}readelf" -d "$bin/api_test" 2>/dev/null | grep -q NEEDED; then
    echo "FAIL: the $t test programs are not statically linked" >&2
    return 1
  fi
  file -b "$bin/api_test" | cut -d, -f1-2
  # The edgebuf tool of the target starts there.
  echo "edgebuf tool: $(${runner[@]+"${runner[@]}"} "$dist/bin/edgebuf" --version) ($(file -b "$dist/bin/edgebuf" | cut -d, -f1,2,4))"
  # The host's reference receiver (`edgebuf receive`) answers the target's programs.
  cargo build --release --quiet --bin edgebuf
  export EDGEBUF_TARGET_RUNNER="${runner[*]}"
  echo "C API test:"
  ( cd "$bin" && timeout 600 ${runner[@]+"${runner[@]}"} ./api_test ) | tail -1
  tests/targets/wide.sh "$bin/wide_test"
  tests/targets/crash.sh "$bin/logger"
  tests/targets/example.sh "$bin/inference"
  if [ -n "$qemu" ]; then
    # The library's own unit tests on this architecture (counters past 2^32, the C struct,
    # configuration ranges, the store, the sender against servers on 127.0.0.1).
    local envs
    cargo_env
    echo "unit tests (cargo test -p edgebuf --lib --target $t, under $qemu):"
    if ! env "${envs[@]}" cargo test -p edgebuf --quiet --lib --target "$t" >"$bin/unit.log" 2>&1; then
      tail -40 "$bin/unit.log" >&2
      echo "FAIL: unit tests on $t" >&2
      return 1
    fi
    grep '^test result' "$bin/unit.log"
  fi
  echo "--- $t: all passed"
}

all() {
  local t results=() start
  for t in $(list); do
    start=$SECONDS
    # The same commands the README shows, one target at a time.
    ./scripts/targets.sh build "$t"
    ./scripts/targets.sh test "$t"
    target_info "$t"
    if [ -f "$dist/lib/libedgebuf.so" ]; then
      results+=("$(printf '%-31s libedgebuf.so %7s bytes stripped, needs %s; %3d s' "$t" \
        "$(stat -c %s "$dist/lib/libedgebuf.so")" "$(glibc_floor)" $((SECONDS - start)))")
    else
      results+=("$(printf '%-31s static only: libedgebuf.a %s bytes; %3d s' "$t" \
        "$(stat -c %s "$dist/lib/libedgebuf.a")" $((SECONDS - start)))")
    fi
  done
  echo
  echo "=== every target built and passed its tests"
  printf '%s\n' "${results[@]}"
}

case "${1:-}" in
  build) build "${2:?target}" ;;
  test) test_target "${2:?target}" ;;
  all) all ;;
  list) list ;;
  # The target's facts as shell assignments, for scripts/package.sh.
  info)
    target_info "${2:?target}"
    printf '%s=%q\n' cc "$cc" bp "$bp" qemu "$qemu" sysroot "$sysroot" kinds "$kinds" \
      deb_arch "$deb_arch" multiarch "$multiarch" wheel_arch "$wheel_arch" dist "$dist"
    ;;
  *) echo "usage: $0 build TARGET | test TARGET | all | list | info TARGET" >&2; exit 2 ;;
esac
