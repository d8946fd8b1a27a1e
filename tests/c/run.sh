#!/usr/bin/env bash
# The C API test (tests/c/api/: one program, api_test, from every .c file there), three ways:
#   (a) C11 with AddressSanitizer + UBSan, LeakSanitizer on, against libedgebuf.so;
#   (b) C11 without instrumentation, run under valgrind (a small workload: valgrind is slow);
#   (c) the same files as C++17 (proves the header compiles as C++), run as well.
# Builds the release library first (cargo only rebuilds when needed). Outputs go to
# target/c-tests/. Runs from any working directory.
#
# Environment: CC, CXX (default gcc, g++); EDGEBUF_SKIP_VALGRIND=1 skips (b) where valgrind is
# not installed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

CC="${CC:-gcc}"
CXX="${CXX:-g++}"
OUT=target/c-tests
LIBDIR="$ROOT/target/release"
SRC=(tests/c/api/*.c)
mkdir -p "$OUT"

step() { printf '\n--- %s ---\n' "$*"; }

step "cargo build --release --lib"
cargo build --release --lib

COMMON=(-Wall -Wextra -Werror -g -I include)
LINK=(-L "$LIBDIR" -ledgebuf "-Wl,-rpath,$LIBDIR" -lpthread -ldl -lm)

step "(a) C11, AddressSanitizer + UndefinedBehaviorSanitizer + LeakSanitizer"
"$CC" -std=c11 -Wpedantic "${COMMON[@]}" -O1 \
  -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer \
  "${SRC[@]}" -o "$OUT/api_test_asan" "${LINK[@]}"
LSAN_SUPP=""
if [[ -f tests/c/lsan.supp ]]; then
  LSAN_SUPP="suppressions=$ROOT/tests/c/lsan.supp:print_suppressions=0"
fi
ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1" \
  LSAN_OPTIONS="$LSAN_SUPP" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
  timeout 120 "$OUT/api_test_asan"

step "(b) C11 under valgrind (EDGEBUF_TEST_SMALL=1)"
"$CC" -std=c11 -Wpedantic "${COMMON[@]}" -O1 "${SRC[@]}" -o "$OUT/api_test" "${LINK[@]}"
if command -v valgrind >/dev/null 2>&1; then
  # tests/c/valgrind.supp: what memcheck reports of optimised Rust that is not an error.
  EDGEBUF_TEST_SMALL=1 timeout 300 valgrind -q --error-exitcode=1 --leak-check=full \
    --errors-for-leak-kinds=definite --suppressions="$ROOT/tests/c/valgrind.supp" "$OUT/api_test"
elif [[ "${EDGEBUF_SKIP_VALGRIND:-0}" == 1 ]]; then
  echo "valgrind not installed: skipped (EDGEBUF_SKIP_VALGRIND=1)"
else
  echo "valgrind is not installed (set EDGEBUF_SKIP_VALGRIND=1 to skip this step)" >&2
  exit 1
fi

step "(c) the same files as C++17"
"$CXX" -x c++ -std=c++17 -Wpedantic "${COMMON[@]}" -O1 "${SRC[@]}" -o "$OUT/api_test_cxx" "${LINK[@]}"
timeout 120 "$OUT/api_test_cxx"

step "C API test: all three passed"
