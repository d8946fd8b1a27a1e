//go:build edgebuf_system

package edgebuf

// Links an installed library: go build -tags edgebuf_system, with edgebuf.pc on
// PKG_CONFIG_PATH (Cflags with the directory of edgebuf.h, Libs with -ledgebuf).

/*
#cgo pkg-config: edgebuf
*/
import "C"
