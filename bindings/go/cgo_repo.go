//go:build !edgebuf_system

package edgebuf

// Links the library built in this repository (cargo build --release --lib). The loader finds
// it at run time through the rpath; it looks for the SONAME, libedgebuf.so.0, next to
// libedgebuf.so (test.sh creates that link when cargo has not).

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: -L${SRCDIR}/../../target/release -ledgebuf -Wl,-rpath,${SRCDIR}/../../target/release
*/
import "C"
