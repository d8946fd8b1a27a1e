#!/usr/bin/env bash
# The Debian packages as a user installs them: dpkg -i the amd64 libedgebuf0, libedgebuf-dev
# and edgebuf-tools, build the C example through `pkg-config edgebuf` (shared and --static),
# run both against the reference receiver, run the installed tool, then remove the packages
# and check that nothing of them is left. The arm64 and armhf packages are checked for their
# architecture and contents. Needs root (or sudo) and: scripts/package.sh all.
# dpkg needs root: run again under sudo (non-interactive) when not root.
if [ "$(id -u)" -ne 0 ]; then exec sudo -n -E "$0" "$@"; fi
. "$(dirname "$0")/common.sh"
pkgs=(libedgebuf0 libedgebuf-dev edgebuf-tools)
debs=()
for p in "${pkgs[@]}"; do
  f="target/packages/${p}_$version-1_amd64.deb"
  [ -f "$f" ] || { echo "FAIL: no $f (run scripts/package.sh all)" >&2; exit 1; }
  debs+=("$f")
done
remove() { dpkg -r edgebuf-tools libedgebuf-dev libedgebuf0 >/dev/null 2>&1 || true; }
trap 'remove; receiver_cleanup' EXIT

# The README's command, exactly.
dpkg -i target/packages/*_amd64.deb >/dev/null
files=$(dpkg -L "${pkgs[@]}" | sort -u)
[ "$(pkg-config --modversion edgebuf)" = "$version" ]
COUNT=50
cc -std=c11 -O2 -o "$tmp/shared" examples-c/inference.c $(pkg-config --cflags --libs edgebuf) -lm
# /lib is /usr/lib on a merged-/usr system: the loader may name either.
ldd "$tmp/shared" | grep -Eq 'libedgebuf.so.0 => (/usr)?/lib/x86_64-linux-gnu/libedgebuf.so.0' ||
  { echo "FAIL: the program does not load the packaged library:" >&2; ldd "$tmp/shared" >&2; exit 1; }
cc -std=c11 -O2 -o "$tmp/static" examples-c/inference.c $(pkg-config --cflags --static --libs edgebuf) -lm
! ldd "$tmp/static" | grep -q libedgebuf || { echo "FAIL: --static needs libedgebuf.so" >&2; exit 1; }
for prog in shared static; do
  (cd "$tmp" && timeout 120 "./$prog" --endpoint "http://127.0.0.1:$port/ingest" \
    --path "$tmp/$prog.db" --count "$COUNT" --rate 0 --quiet) >"$tmp/$prog.log" ||
    { cat "$tmp/$prog.log" >&2; exit 1; }
done
/usr/bin/edgebuf --version
/usr/bin/edgebuf status "$tmp/shared.db" >/dev/null
stop_receiver
check_example_received "$out" "$COUNT" 2 "Debian packages"

remove
left=$(echo "$files" | while read -r f; do [ -f "$f" ] || [ -L "$f" ] && echo "$f"; done; true)
left=$(echo "$left" | grep -v '^/usr/share/doc$\|^/\.$' || true)
if [ -n "$left" ] || dpkg -s libedgebuf0 >/dev/null 2>&1; then
  echo "FAIL: removing the packages left: $left" >&2
  exit 1
fi
echo "deb amd64: installed, built and ran through pkg-config, removed without a trace"

# arm64 and armhf: the right architecture, with the library and the tool of that machine.
for a in arm64:aarch64-linux-gnu:AArch64 armhf:arm-linux-gnueabihf:ARM; do
  IFS=: read -r arch ma machine <<<"$a"
  x="$tmp/x-$arch"
  for p in "${pkgs[@]}"; do
    f="target/packages/${p}_$version-1_$arch.deb"
    [ "$(dpkg-deb -f "$f" Architecture)" = "$arch" ]
    dpkg-deb -x "$f" "$x"
  done
  for f in "$x/usr/lib/$ma/libedgebuf.so.$version" "$x/usr/bin/edgebuf"; do
    readelf -h "$f" | grep -q "Machine:.*$machine" || { echo "FAIL: $f is not $machine" >&2; exit 1; }
  done
  [ -L "$x/usr/lib/$ma/libedgebuf.so.0" ] && [ -f "$x/usr/lib/$ma/pkgconfig/edgebuf.pc" ]
  echo "deb $arch: $machine library, tool and pkg-config files in /usr/lib/$ma"
done
