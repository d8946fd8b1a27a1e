#!/usr/bin/env bash
# pkgconfig.sh OUTDIR PREFIX LIBDIR INCLUDEDIR VERSION [static-only]
# Writes the pkg-config files of an installed edgebuf into OUTDIR, for every way edgebuf is
# installed (make install, the release archives, the Debian -dev package):
#   edgebuf.pc         Cflags, and in Libs.private the archive with what it needs, so that
#                      `pkg-config --static --libs edgebuf` links libedgebuf.a;
#   edgebuf-shared.pc  -ledgebuf, which edgebuf.pc requires: a plain `--libs` links the .so.
# Why two files: pkg-config puts a package's own Libs.private before the libraries of what it
# requires, so the static link sees libedgebuf.a first and resolves every edgebuf_* symbol
# there; the .so behind it is --as-needed, so it is then not needed and not recorded. With one
# file, -ledgebuf would come first and the program would need the .so at run time.
# LIBDIR and INCLUDEDIR may use ${prefix}; PREFIX may use ${pcfiledir} (relocatable archives).
# "static-only" (musl targets: no .so) writes only edgebuf.pc, linking the archive always.
# Outside /usr (a prefix of make install, an unpacked archive) the shared link also records
# -rpath ${libdir}, so that what pkg-config builds starts without LD_LIBRARY_PATH or ldconfig.
set -euo pipefail
out=$1 prefix=$2 libdir=$3 includedir=$4 version=$5 mode=${6:-}
# What a static link needs besides libedgebuf.a (rustc --print native-static-libs).
private="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"
[ "$mode" = static-only ] && private="-lpthread -lm"
rpath=" -Wl,-rpath,\${libdir}"
[ "$prefix" = /usr ] && rpath=""
mkdir -p "$out"
head() {
  printf '%s\n' "prefix=$prefix" "libdir=$libdir" "includedir=$includedir" ""
}
if [ "$mode" = static-only ]; then
  { head; printf '%s\n' 'Name: edgebuf' \
      'Description: durable on-device buffer for ML inference records (static library)' \
      "Version: $version" 'Libs: ${libdir}/libedgebuf.a' "Libs.private: $private" \
      'Cflags: -I${includedir}'; } >"$out/edgebuf.pc"
else
  { head; printf '%s\n' 'Name: edgebuf' \
      'Description: durable on-device buffer for ML inference records' \
      "Version: $version" 'Requires: edgebuf-shared' \
      "Libs.private: \${libdir}/libedgebuf.a $private" 'Cflags: -I${includedir}'; } >"$out/edgebuf.pc"
  { head; printf '%s\n' 'Name: edgebuf-shared' \
      'Description: the shared library of edgebuf (use the edgebuf package; it requires this one)' \
      "Version: $version" "Libs: -L\${libdir} -Wl,--as-needed -ledgebuf -Wl,--no-as-needed$rpath"; } \
    >"$out/edgebuf-shared.pc"
fi
