#!/usr/bin/env bash
# The power-cut simulation: builds the shadow shim and the driver, then runs run.py.
#   POWERCUT_ROUNDS (200) rounds, POWERCUT_SEED (random, printed) for a repeatable run.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet --lib --bin edgebuf
ln -sf libedgebuf.so target/release/libedgebuf.so.0
out=target/powercut
mkdir -p "$out"
cc -shared -fPIC -O1 -Wall -Wextra -Werror -o "$out/shadow.so" tests/powercut/shadow.c -ldl
cc -std=c11 -O1 -Wall -Wextra -Werror -Iinclude -o "$out/logger" tests/c/logger.c \
  -Ltarget/release -ledgebuf "-Wl,-rpath,$PWD/target/release" -lpthread
seed=${POWERCUT_SEED:-$RANDOM}
python3 tests/powercut/run.py "$PWD/$out/logger" "$PWD/$out/shadow.so" "$PWD/target/release/edgebuf" \
  "${POWERCUT_ROUNDS:-200}" "$seed"
