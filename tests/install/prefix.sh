#!/usr/bin/env bash
# `make install` into a temporary prefix, used as a user outside the checkout would:
#  - the C example built against it with CMake (pkg-config), and statically with
#    `pkg-config --static`, both run against the reference receiver;
#  - a Go program in a module of its own (outside the checkout) builds with a plain `go build`,
#    no build tags, only PKG_CONFIG_PATH, the binding reached by a `replace` to this checkout
#    (no network), and runs with no LD_LIBRARY_PATH;
#  - the installed tool and C++ header work;
#  - `make uninstall` removes every file install put there.
. "$(dirname "$0")/common.sh"
# The README's command, exactly, with HOME in the temporary directory (rustup and cargo keep
# finding their own homes).
(
  export RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
  export HOME="$tmp"
  make install PREFIX="$HOME/.local"
) >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log" >&2; exit 1; }
prefix="$tmp/.local"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"

# C: CMake's pkg_check_modules, and a static link through pkg-config --static.
cmake -S examples-c/cmake -B "$tmp/build" -DCMAKE_BUILD_RULE_MESSAGES=OFF >/dev/null
cmake --build "$tmp/build" >/dev/null
readelf -d "$tmp/build/inference" | grep -q 'NEEDED.*libedgebuf.so.0'
cc -std=c11 -O2 -o "$tmp/inference-static" examples-c/inference.c \
  $(pkg-config --cflags --static --libs edgebuf) -lm
! ldd "$tmp/inference-static" | grep -q libedgebuf || { echo "FAIL: --static needs libedgebuf.so" >&2; exit 1; }
COUNT=50
for prog in build/inference inference-static; do
  (cd "$tmp" && env -u LD_LIBRARY_PATH timeout 120 "./$prog" --endpoint "http://127.0.0.1:$port/ingest" \
    --path "$tmp/$(basename "$prog").db" --count "$COUNT" --rate 0 --quiet) >"$tmp/c.log" ||
    { cat "$tmp/c.log" >&2; exit 1; }
done
echo "c: CMake (pkg-config, rpath from edgebuf.pc) and pkg-config --static consumers ran"

mkdir "$tmp/app"
cat >"$tmp/app/go.mod" <<GOMOD
module example.com/edgebuf-app

go 1.22

require github.com/edgebuf/edgebuf/bindings/go v0.1.0

replace github.com/edgebuf/edgebuf/bindings/go => $root/bindings/go
GOMOD
cat >"$tmp/app/main.go" <<'GO'
package main

import (
	"fmt"
	"os"
	"time"

	edgebuf "github.com/edgebuf/edgebuf/bindings/go"
)

func main() {
	buf, err := edgebuf.Open(edgebuf.Config{
		"path":      os.Args[2],
		"endpoint":  os.Args[1],
		"source.id": "go-app",
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for i := 0; i < 30; i++ {
		if err := buf.LogJSON(map[string]int{"i": i}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	if err := buf.Flush(30 * time.Second); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("edgebuf", edgebuf.Version(), "delivered 30")
	if err := buf.Close(5 * time.Second); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
GO
# A fresh build cache, as on a user's machine: Go's cache does not notice that pkg-config's
# answer changed (a new prefix each run), and would link against an earlier run's prefix.
(cd "$tmp/app" && GOCACHE="$tmp/gocache" GOFLAGS=-mod=mod GOPROXY=off go build -o app .)
ldd "$tmp/app/app" | grep -q "libedgebuf.so.0 => $prefix/lib" ||
  { echo "FAIL: the Go program does not load the installed library:" >&2; ldd "$tmp/app/app" >&2; exit 1; }
(cd "$tmp/app" && env -u LD_LIBRARY_PATH ./app "http://127.0.0.1:$port/ingest" "$tmp/app/buf.db")
stop_receiver
check_example_received <(grep -v '"source":"go-app"' "$out") "$COUNT" 2 "installed prefix"
n=$(grep -c '"source":"go-app"' "$out")
[ "$n" -eq 30 ] || { echo "FAIL: the receiver got $n of 30 records" >&2; exit 1; }
echo "go: a module outside the checkout built with plain go build against the prefix; 30 records delivered"

"$prefix/bin/edgebuf" status "$tmp/app/buf.db" >/dev/null
printf '#include <edgebuf.hpp>\nint main() { return edgebuf_version()[0] ? 0 : 1; }\n' >"$tmp/v.cpp"
c++ -std=c++17 -o "$tmp/cpp" "$tmp/v.cpp" $(pkg-config --cflags --libs edgebuf)
"$tmp/cpp"

make uninstall PREFIX="$prefix" >/dev/null
left=$(find "$prefix" -not -type d)
[ -z "$left" ] || { echo "FAIL: make uninstall left: $left" >&2; exit 1; }
echo "prefix: make install gave the tool, the C++ header and pkg-config files; make uninstall removed them all"
