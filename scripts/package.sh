#!/usr/bin/env bash
# Packages what `scripts/targets.sh build TARGET` left in target/dist/TARGET, into
# target/packages/:
#
#   scripts/package.sh archive TARGET  edgebuf-VERSION-TARGET.tar.gz: lib/ (the .so with its
#                                      links, the .a), include/ (edgebuf.h, edgebuf.hpp),
#                                      lib/pkgconfig/ (relocatable: ${pcfiledir}), bin/edgebuf,
#                                      LICENSE, CHANGELOG.md, README.md
#   scripts/package.sh deb TARGET      libedgebuf0, libedgebuf-dev and edgebuf-tools
#                                      _VERSION-1_ARCH.deb (dpkg-deb; amd64, arm64, armhf)
#   scripts/package.sh wheel TARGET    edgebuf-VERSION-py3-none-manylinux_2_N_ARCH.whl, the
#                                      Python binding with libedgebuf.so inside (x86_64, aarch64)
#   scripts/package.sh TARGET          build TARGET (scripts/targets.sh build), then all of the
#                                      above that TARGET has
#   scripts/package.sh all             every package of every target, from the builds that
#                                      scripts/targets.sh left
#
# The per-target facts (Debian architecture, multiarch directory, wheel platform) are columns
# of the target table in scripts/targets.sh. The wheel is built with setuptools from the
# prebuilt library: the binding is ctypes, so nothing is compiled for Python, and the build
# needs setuptools and wheel once, in target/wheel-venv.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
MAJOR=${VERSION%%.*}
OUT="$ROOT/target/packages"
MAINTAINER="edgebuf maintainers <maintainers@edgebuf.invalid>"

# load TARGET: the target's facts (cc, bp, kinds, deb_arch, multiarch, wheel_arch, dist).
load() {
  eval "$(scripts/targets.sh info "$1")"
  target=$1
  [ -f "$dist/lib/libedgebuf.a" ] && [ -x "$dist/bin/edgebuf" ] ||
    { echo "build $target first: scripts/targets.sh build $target" >&2; exit 1; }
  shared=false
  [[ " $kinds " == *" shared "* ]] && shared=true
  return 0
}

# glibc_floor FILE: the newest GLIBC_ symbol version FILE needs, e.g. 2.34.
glibc_floor() {
  "${bp}objdump" -T "$1" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1
}

# Reproducible archives: fixed owner, order and time (the last commit's).
tar_gz() {
  local epoch
  epoch=$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || echo 0)
  tar --owner=0 --group=0 --numeric-owner --sort=name --mtime="@$epoch" -czf "$@"
}

archive() {
  load "$1"
  local name="edgebuf-$VERSION-$target" stage
  stage=$(mktemp -d)
  local d="$stage/$name"
  mkdir -p "$d/lib" "$d/include" "$d/bin"
  if $shared; then
    cp "$dist/lib/libedgebuf.so" "$d/lib/libedgebuf.so.$VERSION"
    ln -s "libedgebuf.so.$VERSION" "$d/lib/libedgebuf.so.$MAJOR"
    ln -s "libedgebuf.so.$MAJOR" "$d/lib/libedgebuf.so"
    scripts/pkgconfig.sh "$d/lib/pkgconfig" '${pcfiledir}/../..' '${prefix}/lib' '${prefix}/include' "$VERSION"
  else
    scripts/pkgconfig.sh "$d/lib/pkgconfig" '${pcfiledir}/../..' '${prefix}/lib' '${prefix}/include' "$VERSION" static-only
  fi
  cp "$dist/lib/libedgebuf.a" "$d/lib/"
  cp include/edgebuf.h bindings/cpp/edgebuf.hpp "$d/include/"
  cp "$dist/bin/edgebuf" "$d/bin/"
  cp LICENSE CHANGELOG.md README.md "$d/"
  mkdir -p "$OUT"
  tar_gz "$OUT/$name.tar.gz" -C "$stage" "$name"
  rm -rf "$stage"
  echo "archive: $OUT/$name.tar.gz ($(stat -c %s "$OUT/$name.tar.gz") bytes)"
}

# deb_build DIR PACKAGE DEPENDS DESCRIPTION [Multi-Arch]: writes DIR/DEBIAN/control and builds.
deb_build() {
  local dir=$1 pkg=$2 depends=$3 desc=$4 multi=${5:-}
  mkdir -p "$dir/DEBIAN" "$dir/usr/share/doc/$pkg"
  cp LICENSE "$dir/usr/share/doc/$pkg/copyright"
  {
    echo "Package: $pkg"
    echo "Version: $VERSION-1"
    echo "Architecture: $deb_arch"
    [ -n "$multi" ] && echo "Multi-Arch: $multi"
    echo "Section: $([ "$pkg" = edgebuf-tools ] && echo utils || echo libs)"
    echo "Priority: optional"
    echo "Maintainer: $MAINTAINER"
    echo "Installed-Size: $(du -sk --exclude=DEBIAN "$dir" | cut -f1)"
    [ -n "$depends" ] && echo "Depends: $depends"
    echo "Description: $desc"
    echo " edgebuf keeps ML inference records durably on the device (SQLite) and delivers"
    echo " them in batches to an HTTP endpoint, retrying with backoff across outages."
  } >"$dir/DEBIAN/control"
  dpkg-deb --root-owner-group -Zxz --build "$dir" "$OUT/${pkg}_$VERSION-1_$deb_arch.deb" >/dev/null
  echo "deb: $OUT/${pkg}_$VERSION-1_$deb_arch.deb"
}

deb() {
  load "$1"
  if [ "$deb_arch" = - ] || ! $shared; then
    echo "no Debian packages for $target" >&2
    return 1
  fi
  local stage libdir
  stage=$(mktemp -d)
  libdir="usr/lib/$multiarch"
  mkdir -p "$OUT"
  # libedgebuf0: the shared library under its SONAME.
  mkdir -p "$stage/lib/$libdir"
  cp "$dist/lib/libedgebuf.so" "$stage/lib/$libdir/libedgebuf.so.$VERSION"
  ln -s "libedgebuf.so.$VERSION" "$stage/lib/$libdir/libedgebuf.so.$MAJOR"
  # The loader's cache learns of the library when the package is installed or removed.
  mkdir -p "$stage/lib/DEBIAN"
  echo "activate-noawait ldconfig" >"$stage/lib/DEBIAN/triggers"
  deb_build "$stage/lib" "libedgebuf$MAJOR" \
    "libc6 (>= $(glibc_floor "$dist/lib/libedgebuf.so")), libgcc-s1" \
    "durable on-device buffer for ML inference records (shared library)" same
  # libedgebuf-dev: what building against it needs.
  mkdir -p "$stage/dev/$libdir" "$stage/dev/usr/include"
  ln -s "libedgebuf.so.$MAJOR" "$stage/dev/$libdir/libedgebuf.so"
  cp "$dist/lib/libedgebuf.a" "$stage/dev/$libdir/"
  cp include/edgebuf.h bindings/cpp/edgebuf.hpp "$stage/dev/usr/include/"
  scripts/pkgconfig.sh "$stage/dev/$libdir/pkgconfig" /usr "\${prefix}/lib/$multiarch" '${prefix}/include' "$VERSION"
  deb_build "$stage/dev" libedgebuf-dev "libedgebuf$MAJOR (= $VERSION-1)" \
    "durable on-device buffer for ML inference records (development files)" same
  # edgebuf-tools: the command-line tool (status, export, check, requeue, compact, drain, receive).
  mkdir -p "$stage/tools/usr/bin"
  cp "$dist/bin/edgebuf" "$stage/tools/usr/bin/"
  deb_build "$stage/tools" edgebuf-tools "libc6 (>= $(glibc_floor "$dist/bin/edgebuf")), libgcc-s1" \
    "durable on-device buffer for ML inference records (the edgebuf tool)"
  rm -rf "$stage"
}

wheel() {
  load "$1"
  if [ "$wheel_arch" = - ] || ! $shared; then
    echo "no Python wheel for $target" >&2
    return 1
  fi
  local venv="$ROOT/target/wheel-venv" stage floor plat built
  if ! "$venv/bin/python" -c 'import setuptools, wheel' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check setuptools wheel
  fi
  # The platform tag promises the glibc the library needs, no more (manylinux_2_N: PEP 600).
  floor=$(glibc_floor "$dist/lib/libedgebuf.so")
  plat="manylinux_${floor/./_}_$wheel_arch"
  stage=$(mktemp -d)
  cp -r bindings/python "$stage/src"
  rm -rf "$stage/src/build" "$stage/src"/*.egg-info "$stage/src/tests"
  cp "$dist/lib/libedgebuf.so" "$stage/src/edgebuf/libedgebuf.so"
  cp LICENSE "$stage/src/"
  "$venv/bin/python" -m pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation \
    -w "$stage/wheel" "$stage/src" >/dev/null
  built=$(ls "$stage"/wheel/edgebuf-*.whl)
  # setuptools makes a wheel without extension modules pure (py3-none-any, purelib); the
  # library inside makes it one platform's (and no Python ABI's: ctypes), installed in platlib.
  # wheel unpack / pack rewrites RECORD for the edited WHEEL file.
  "$venv/bin/python" -m wheel unpack -d "$stage/unpacked" "$built" >/dev/null
  local info
  info=$(ls -d "$stage"/unpacked/*/edgebuf-"$VERSION".dist-info)
  sed -i -e 's/^Root-Is-Purelib: .*/Root-Is-Purelib: false/' -e "s/^Tag: .*/Tag: py3-none-$plat/" "$info/WHEEL"
  rm -f "$stage"/wheel/*.whl
  "$venv/bin/python" -m wheel pack -d "$stage/wheel" "$(dirname "$info")" >/dev/null
  mkdir -p "$OUT"
  rm -f "$OUT"/edgebuf-"$VERSION"-*"$wheel_arch".whl
  mv "$stage"/wheel/edgebuf-"$VERSION"-py3-none-"$plat".whl "$OUT/"
  rm -rf "$stage"
  echo "wheel: $OUT/edgebuf-$VERSION-py3-none-$plat.whl"
}

# packages TARGET: every package of one target, from its build.
packages() {
  archive "$1"
  eval "$(scripts/targets.sh info "$1")"
  if [ "$deb_arch" != - ]; then deb "$1"; fi
  if [ "$wheel_arch" != - ]; then wheel "$1"; fi
}

case "${1:-}" in
  archive | deb | wheel) "$1" "${2:?target}" ;;
  # Every target's packages, from the builds scripts/targets.sh left (CI: after `all`).
  all) for t in $(scripts/targets.sh list); do packages "$t"; done ;;
  -h | --help | "") echo "usage: $0 TARGET | archive TARGET | deb TARGET | wheel TARGET | all" >&2; exit 2 ;;
  # One command per target: build it, then package it.
  *)
    scripts/targets.sh build "$1"
    packages "$1"
    ;;
esac
