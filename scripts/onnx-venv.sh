#!/usr/bin/env bash
# Creates (once) the virtual environment the ONNX Runtime examples use, under target/onnx-venv,
# with onnxruntime, onnx and numpy from PyPI and the edgebuf Python binding from this checkout.
# Prints two lines: the venv's python, and the path of the wheel's libonnxruntime.so (the C API
# library the Go example loads). Runs from any directory.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/target/onnx-venv"
py="$venv/bin/python"
req="$root/examples-python/requirements.txt"
stamp="$venv/.edgebuf-requirements"

if [ ! -x "$py" ]; then
  python3 -m venv "$venv" >&2
fi
if ! cmp -s "$req" "$stamp" 2>/dev/null; then
  "$py" -m pip install -q --disable-pip-version-check -r "$req" >&2
  cp "$req" "$stamp"
fi
# The binding is reinstalled every time: it is small and follows the checkout.
"$py" -m pip install -q --disable-pip-version-check "$root/bindings/python" >&2 \
  || "$py" -m pip install -q --disable-pip-version-check --no-build-isolation "$root/bindings/python" >&2
rm -rf "$root/bindings/python/build" "$root"/bindings/python/*.egg-info

ort_lib="$("$py" - <<'PY'
import glob, os, onnxruntime
capi = os.path.join(os.path.dirname(onnxruntime.__file__), "capi")
libs = sorted(glob.glob(os.path.join(capi, "libonnxruntime.so*")))
print(libs[0] if libs else "")
PY
)"
if [ -z "$ort_lib" ]; then
  echo "onnx-venv: no libonnxruntime.so in the onnxruntime wheel" >&2
  exit 1
fi
echo "$py"
echo "$ort_lib"
