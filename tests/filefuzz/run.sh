#!/usr/bin/env bash
# Fuzzing of file input: FILEFUZZ_CASES (1000) damaged copies of a buffer file, each opened in
# a child process (tests/filefuzz/run.py). FILEFUZZ_SEED (random, printed) replays a run.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet --lib
ln -sf libedgebuf.so target/release/libedgebuf.so.0
out=target/filefuzz
mkdir -p "$out"
cc -std=c11 -O1 -Wall -Wextra -Werror -Iinclude -o "$out/logger" tests/c/logger.c \
  -Ltarget/release -ledgebuf "-Wl,-rpath,$PWD/target/release" -lpthread
python3 tests/filefuzz/run.py "$PWD/$out/logger" "${FILEFUZZ_CASES:-1000}" "${FILEFUZZ_SEED:-$RANDOM}"
