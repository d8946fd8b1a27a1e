#!/usr/bin/env bash
# Release archives as a user gets them: each one unpacked into a directory of its own outside
# the checkout, then the C example built against it through its relocatable pkg-config files,
# linked dynamically and statically, and run with no LD_LIBRARY_PATH against the reference
# receiver. The ARM archives are checked for their architecture (scripts/targets.sh runs the
# programs themselves under qemu). Needs: scripts/package.sh all.
. "$(dirname "$0")/common.sh"
COUNT=50
builds=0

# unpack TARGET: sets d to the unpacked top directory and checks what it holds.
unpack() {
  local a="target/packages/edgebuf-$version-$1.tar.gz" f
  [ -f "$a" ] || { echo "FAIL: no $a (run scripts/package.sh all)" >&2; exit 1; }
  mkdir -p "$tmp/$1/opt"
  tar xzf "$a" -C "$tmp/$1/opt"
  d="$tmp/$1/opt/edgebuf-$version-$1"
  for f in lib/libedgebuf.a include/edgebuf.h include/edgebuf.hpp lib/pkgconfig/edgebuf.pc \
    bin/edgebuf LICENSE CHANGELOG.md README.md; do
    [ -e "$d/$f" ] || { echo "FAIL: $a has no $f" >&2; exit 1; }
  done
}

# run_example PROGRAM NAME: the example logs COUNT predictions to the receiver.
run_example() {
  (cd "$tmp" && timeout 120 "$1" --endpoint "http://127.0.0.1:$port/ingest" \
    --path "$tmp/$2.db" --count "$COUNT" --rate 0 --quiet) >"$tmp/$2.log" ||
    { cat "$tmp/$2.log" >&2; exit 1; }
  builds=$((builds + 1))
}

# glibc x86_64: shared and static, and the C++ header.
t=x86_64-unknown-linux-gnu
unpack $t
export PKG_CONFIG_PATH="$d/lib/pkgconfig"
[ "$(pkg-config --modversion edgebuf)" = "$version" ]
cc -std=c11 -O2 -o "$tmp/shared" examples-c/inference.c $(pkg-config --cflags --libs edgebuf) -lm
ldd "$tmp/shared" | grep -q "libedgebuf.so.0 => $d/lib" ||
  { echo "FAIL: the shared build does not load the archive's library:" >&2; ldd "$tmp/shared" >&2; exit 1; }
run_example "$tmp/shared" shared
cc -std=c11 -O2 -o "$tmp/static" examples-c/inference.c $(pkg-config --cflags --static --libs edgebuf) -lm
if ldd "$tmp/static" | grep -q libedgebuf; then
  echo "FAIL: pkg-config --static gave a program that needs libedgebuf.so" >&2
  exit 1
fi
run_example "$tmp/static" static
printf '#include <edgebuf.hpp>\nint main() { return edgebuf_version()[0] ? 0 : 1; }\n' >"$tmp/v.cpp"
c++ -std=c++17 -o "$tmp/cpp" "$tmp/v.cpp" $(pkg-config --cflags --libs edgebuf)
"$tmp/cpp"
"$d/bin/edgebuf" status "$tmp/shared.db" >/dev/null
echo "archive $t: shared, static (pkg-config --static: no libedgebuf.so needed) and C++ builds ran"

# musl x86_64: static only; its edgebuf.pc always links the archive.
t=x86_64-unknown-linux-musl
unpack $t
export PKG_CONFIG_PATH="$d/lib/pkgconfig"
musl-gcc -std=c11 -O2 -static -o "$tmp/musl" examples-c/inference.c $(pkg-config --cflags --libs edgebuf)
file -b "$tmp/musl" | grep -q 'statically linked' || { file "$tmp/musl" >&2; exit 1; }
run_example "$tmp/musl" musl
"$d/bin/edgebuf" status "$tmp/musl.db" >/dev/null
echo "archive $t: a fully static program ran; the static edgebuf tool read its buffer"

# ARM: the library and the tool are for the archive's machine.
for t in aarch64-unknown-linux-gnu:AArch64 armv7-unknown-linux-gnueabihf:ARM; do
  machine=${t#*:} t=${t%%:*}
  unpack "$t"
  for f in "$d/lib/libedgebuf.so.$version" "$d/bin/edgebuf"; do
    readelf -h "$f" | grep -q "Machine:.*$machine" ||
      { echo "FAIL: $f is not for $machine" >&2; readelf -h "$f" >&2; exit 1; }
  done
  grep -q 'libdir=${prefix}/lib' "$d/lib/pkgconfig/edgebuf.pc"
  echo "archive $t: library and tool are $machine"
done

stop_receiver
check_example_received "$out" "$COUNT" "$builds" "release archives"
