#!/usr/bin/env bash
# Tests the Go binding against the release library of this checkout: go vet, go test with
# cgocheck=1, go test -race (EDGEBUF_CGOCHECK2=1 adds a cgocheck2 run). Runs from any directory.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
lib="$root/target/release"

if [ ! -f "$lib/libedgebuf.so" ]; then
  echo "building the release library"
  (cd "$root" && cargo build --release --lib)
fi
# cargo names the file libedgebuf.so but its SONAME is libedgebuf.so.0, which is what the
# dynamic loader looks for at run time (through the rpath set in the cgo flags).
[ -e "$lib/libedgebuf.so.0" ] || ln -sfn libedgebuf.so "$lib/libedgebuf.so.0"

cd "$here"
export CGO_ENABLED=1
# A rebuilt library is not part of Go's test cache key: -count=1 always reruns.
echo "--- go vet"
go vet -tags edgebuf_repo ./...
echo "--- go test (GODEBUG=cgocheck=1)"
GODEBUG=cgocheck=1 go test -tags edgebuf_repo -count=1 ./...
echo "--- go test -race"
go test -tags edgebuf_repo -race -count=1 ./...
# Stricter pointer checks (every pointer stored by C). Opt-in: with a cold Go cache it rebuilds
# the standard library (~25 s on 2 cores), which would push this script near its time budget.
if [ "${EDGEBUF_CGOCHECK2:-0}" = 1 ]; then
  echo "--- go test (GOEXPERIMENT=cgocheck2)"
  GOEXPERIMENT=cgocheck2 go test -tags edgebuf_repo -count=1 ./...
fi
