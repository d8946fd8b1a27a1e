#!/usr/bin/env bash
# Runs every test of edgebuf: Rust unit and integration tests, the C API test under
# AddressSanitizer and valgrind, the C example, the Go, Python and C++ bindings, and the
# ONNX Runtime examples in Python and Go (which install onnxruntime from PyPI into target/).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

step() { printf '\n=== %s ===\n' "$*"; }

step "cargo build --release (the C library)"
cargo build --release --lib
# The SONAME is libedgebuf.so.0; programs linked with -ledgebuf look for that name.
ln -sf libedgebuf.so target/release/libedgebuf.so.0

step "cargo test"
cargo test --lib --bins --tests -- --test-threads=2

step "./scripts/demo.sh (the README's demo: an outage in the middle, nothing lost)"
./scripts/demo.sh >target/demo.log 2>&1 || { cat target/demo.log; exit 1; }
tail -12 target/demo.log

for t in tests/c/run.sh tests/fsync/run.sh tests/bindmount/run.sh tests/powercut/run.sh tests/filefuzz/run.sh examples-c/run.sh tests/install/prefix.sh tests/install/readme.sh examples-c/static-test.sh bindings/cpp/test.sh bindings/go/test.sh bindings/python/test.sh examples-python/run.sh examples-go/run.sh; do
  if [ -x "$t" ]; then
    step "$t"
    "$t"
  fi
done
step "all tests passed"
