#!/usr/bin/env bash
# `make install` into a temporary prefix, used as a user outside the checkout would:
#  - a Go program in a module of its own (outside the checkout) builds with a plain `go build`,
#    no build tags, only PKG_CONFIG_PATH, the binding reached by a `replace` to this checkout
#    (no network), and runs with no LD_LIBRARY_PATH;
#  - the installed tool and C++ header work;
#  - `make uninstall` removes every file install put there.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
. scripts/common.sh
cargo build --release --quiet --bin edgebuf
with_receiver
prefix="$tmp/prefix"
make install PREFIX="$prefix" >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log" >&2; exit 1; }
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"

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
(cd "$tmp/app" && GOFLAGS=-mod=mod GOPROXY=off go build -o app .)
ldd "$tmp/app/app" | grep -q "libedgebuf.so.0 => $prefix/lib" ||
  { echo "FAIL: the Go program does not load the installed library:" >&2; ldd "$tmp/app/app" >&2; exit 1; }
(cd "$tmp/app" && env -u LD_LIBRARY_PATH ./app "http://127.0.0.1:$port/ingest" "$tmp/app/buf.db")
stop_receiver
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
