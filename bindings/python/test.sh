#!/usr/bin/env bash
# Tests the Python binding: installs it (pip install ./bindings/python) into a virtual
# environment under target/py-venv, with pytest, and runs its tests. Runs from any directory.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
lib="$root/target/release"

if [ ! -f "$lib/libedgebuf.so" ]; then
  echo "building the release library"
  (cd "$root" && cargo build --release --lib)
fi

cd "$root"
venv="$root/target/py-venv"
pip_install() { "$py" -m pip install -q --disable-pip-version-check "$@"; }
if [ -x "$venv/bin/python" ] || python3 -m venv "$venv" 2>/dev/null; then
  py="$venv/bin/python"
  "$py" -c 'import pytest' 2>/dev/null || pip_install pytest
  # Without network (no setuptools download for an isolated build) use the venv's setuptools.
  pip_install ./bindings/python || pip_install --no-build-isolation ./bindings/python
  pytest=("$venv/bin/pytest")
else
  echo "python3 -m venv is not available: falling back to pip install --user"
  py=python3
  python3 -c 'import pytest' 2>/dev/null || pip_install --user pytest
  pip_install --user ./bindings/python || pip_install --user --no-build-isolation ./bindings/python
  pytest=(python3 -m pytest)
fi

# setuptools builds in the source tree; leave it clean.
rm -rf "$here/build" "$here"/*.egg-info

# Run from outside the source tree so the installed package is what gets imported, with the
# library of this build named by EDGEBUF_LIB (the package never searches for a checkout).
export EDGEBUF_LIB="$lib/libedgebuf.so"
cd "$root/target"
"${pytest[@]}" -q -p no:cacheprovider "$here/tests" "$@"
