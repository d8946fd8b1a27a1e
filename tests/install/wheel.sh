#!/usr/bin/env bash
# The Python wheels as a user installs them: the x86_64 wheel goes into a fresh virtual
# environment outside the checkout with no package index (PIP_NO_INDEX=1); there, with no
# EDGEBUF_* variable set, `import edgebuf` loads the library inside the package and a script
# logs to the reference receiver. The aarch64 wheel is checked for its tag and its library's
# architecture. Needs: scripts/package.sh all.
. "$(dirname "$0")/common.sh"
wheel_of() {
  local w
  w=$(ls target/packages/edgebuf-"$version"-py3-none-manylinux_*_"$1".whl 2>/dev/null | head -1)
  [ -n "$w" ] || { echo "FAIL: no $1 wheel in target/packages (run scripts/package.sh all)" >&2; exit 1; }
  echo "$w"
}
w=$(wheel_of x86_64)
# The tag promises no newer glibc than this machine's, and the wheel says which it needs.
floor=$(echo "$w" | sed 's/.*manylinux_\([0-9]*\)_\([0-9]*\)_.*/\1.\2/')
have=$(getconf GNU_LIBC_VERSION | cut -d' ' -f2)
[ "$(printf '%s\n%s\n' "$floor" "$have" | sort -V | tail -1)" = "$have" ] ||
  { echo "FAIL: the wheel needs glibc $floor, this machine has $have" >&2; exit 1; }

python3 -m venv "$tmp/venv"
# The README's command, exactly, with the fresh environment's pip and no package index.
(
  export PATH="$tmp/venv/bin:$PATH" PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1
  pip install target/packages/edgebuf-*-manylinux_*_x86_64.whl >/dev/null
)
mkdir "$tmp/app"
cat >"$tmp/app/log_some.py" <<'PY'
import sys
import edgebuf

endpoint, path, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
print("loaded", edgebuf.library_path)
with edgebuf.Buffer(path=path, endpoint=endpoint, source_id="wheel-test") as buf:
    for i in range(count):
        buf.log({"i": i, "model": "wheel"})
    buf.flush(30)
    st = buf.status()
    print("delivered", st.delivered_total)
PY
loaded=$(cd "$tmp/app" && env -u EDGEBUF_LIB -u LD_LIBRARY_PATH "$tmp/venv/bin/python" log_some.py \
  "http://127.0.0.1:$port/ingest" "$tmp/app/buf.db" 40)
echo "$loaded"
echo "$loaded" | grep -q "^loaded $tmp/venv/lib/python.*/site-packages/edgebuf/libedgebuf.so$" ||
  { echo "FAIL: the package did not load its own library" >&2; exit 1; }
echo "$loaded" | grep -qx 'delivered 40'
stop_receiver
n=$(grep -c '"source":"wheel-test"' "$out")
[ "$n" -eq 40 ] || { echo "FAIL: the receiver got $n of 40 records" >&2; exit 1; }
echo "wheel x86_64 ($(basename "$w")): installed offline outside the checkout, 40 records delivered"

w=$(wheel_of aarch64)
mkdir "$tmp/aarch64"
python3 -m zipfile -e "$w" "$tmp/aarch64"
readelf -h "$tmp/aarch64/edgebuf/libedgebuf.so" | grep -q 'Machine:.*AArch64' ||
  { echo "FAIL: the aarch64 wheel's library is not AArch64" >&2; exit 1; }
grep -qx 'Tag: py3-none-manylinux_[0-9]*_[0-9]*_aarch64' "$tmp/aarch64"/edgebuf-*.dist-info/WHEEL
echo "wheel aarch64 ($(basename "$w")): tagged and built for AArch64"
