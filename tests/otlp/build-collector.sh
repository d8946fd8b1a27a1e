#!/usr/bin/env bash
# Builds the test collector (tests/otlp/collector: the OTLP receiver and the OTLP/HTTP exporter
# of the OpenTelemetry Collector, from its Go modules) into target/otelcol. Skips the build when
# target/otelcol is newer than every source file of the module. The modules come from the Go
# module proxy that `go env GOPROXY` names, checked against the committed go.sum.
#
# Environment: OTELCOL_BUILD_TIMEOUT (seconds, default 1800): the build is stopped after that.
# From a cold module cache the build takes a few minutes on 2 cores (downloads, then the
# compile of about 200 packages); with the modules and the build cache warm, seconds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SRC="$ROOT/tests/otlp/collector"
OUT="$ROOT/target/otelcol"
TIMEOUT="${OTELCOL_BUILD_TIMEOUT:-1800}"

if [[ -x "$OUT" ]] && [[ -z "$(find "$SRC" -type f -newer "$OUT" -print -quit)" ]]; then
  echo "build-collector: $OUT is up to date"
  exit 0
fi
if ! command -v go >/dev/null; then
  echo "build-collector: go is not installed" >&2
  exit 1
fi
# go.mod names the Go version the collector modules need; an older go command fetches that
# toolchain itself unless GOTOOLCHAIN=local forbids it.
want=$(awk '$1 == "go" { print $2; exit }' "$SRC/go.mod")
echo "build-collector: $(go version), module wants go $want, GOTOOLCHAIN=${GOTOOLCHAIN:-auto}"
if [[ "${GOTOOLCHAIN:-}" == local ]]; then
  have=$(go env GOVERSION | sed 's/^go//')
  if [[ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -1)" != "$want" ]]; then
    echo "build-collector: go $have is older than $want and GOTOOLCHAIN=local" \
      "keeps it from fetching go $want: unset GOTOOLCHAIN" >&2
    exit 1
  fi
fi

mkdir -p "$ROOT/target"
start=$SECONDS
cd "$SRC"
echo "build-collector: downloading the modules the build needs"
# go list downloads only the modules of packages that are built (go mod download would also
# fetch the test-only modules named in go.sum).
timeout "$TIMEOUT" go list -mod=readonly -deps . >/dev/null
echo "build-collector: modules ready after $((SECONDS - start)) s; compiling"
left=$((TIMEOUT - (SECONDS - start)))
if ((left < 60)); then left=60; fi
# -mod=readonly: go.mod and go.sum are used as committed, never changed by the build.
timeout "$left" go build -mod=readonly -trimpath -ldflags='-s -w' -o "$OUT.tmp" .
mv -f "$OUT.tmp" "$OUT"
echo "build-collector: $OUT built in $((SECONDS - start)) s ($(du -h "$OUT" | cut -f1))"
