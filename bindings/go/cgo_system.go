//go:build !edgebuf_repo

package edgebuf

// Links an installed library through pkg-config: `pkg-config edgebuf` must find edgebuf.pc
// (make install, the libedgebuf-dev package or a release archive; set PKG_CONFIG_PATH for a
// prefix outside the standard ones). Outside /usr the .pc records an rpath, so the program
// starts without LD_LIBRARY_PATH.

/*
#cgo pkg-config: edgebuf
*/
import "C"
