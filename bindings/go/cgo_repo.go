//go:build edgebuf_repo

package edgebuf

// Links the library built in this repository (cargo build --release --lib), for the
// repository's own tests and examples: go test -tags edgebuf_repo. The loader finds it at run
// time through the rpath; it looks for the SONAME, libedgebuf.so.0, next to libedgebuf.so
// (make, and test.sh, create that link).

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: -L${SRCDIR}/../../target/release -ledgebuf -Wl,-rpath,${SRCDIR}/../../target/release
*/
import "C"
