#!/usr/bin/env bash
# The README's C build lines, exactly as written: every `sh` block that follows the marker
# "<!-- run by tests/install/readme.sh ... -->" is run line by line in the repository root,
# with HOME in a temporary directory (so `make install PREFIX="$HOME/.local"` installs there).
# After each block the programs it built must start and deliver to the reference receiver,
# with no LD_LIBRARY_PATH. The programs it writes in the repository root are removed.
. "$(dirname "$0")/common.sh"
trap 'rm -f "$root/inference" "$root/inference-static"; receiver_cleanup' EXIT
awk '
  /^<!-- run by tests\/install\/readme.sh/ { marked = 1; next }
  marked && /^```sh$/ { inblock = 1; blocks++; next }
  inblock && /^```$/ { inblock = 0; marked = 0; print "#END"; next }
  inblock { print }
' README.md >"$tmp/lines"
blocks=$(grep -c '^#END$' "$tmp/lines")
[ "$blocks" -ge 2 ] || { echo "FAIL: found $blocks marked blocks in README.md" >&2; exit 1; }
COUNT=20
runs=0
# Each block runs in one shell (an `export` holds for the lines after it), as a reader would
# paste it; then what it built runs.
block=""
while IFS= read -r line; do
  if [ "$line" = "#END" ]; then
    echo "--- README block:"
    printf '%s\n' "$block"
    (
      export RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
      export HOME="$tmp/home"
      mkdir -p "$HOME"
      set -e
      eval "$block"
    ) >"$tmp/block.log" 2>&1 || { cat "$tmp/block.log" >&2; echo "FAIL: the README block above failed" >&2; exit 1; }
    for prog in inference inference-static; do
      [ -x "$prog" ] || continue
      (cd "$tmp" && env -u LD_LIBRARY_PATH timeout 120 "$root/$prog" --endpoint "http://127.0.0.1:$port/ingest" \
        --path "$tmp/$runs-$prog.db" --count "$COUNT" --rate 0 --quiet) >"$tmp/run.log" ||
        { cat "$tmp/run.log" >&2; echo "FAIL: $prog built by the README block did not run" >&2; exit 1; }
      rm -f "$prog"
      runs=$((runs + 1))
    done
    block=""
  else
    block+="$line"$'\n'
  fi
done <"$tmp/lines"
stop_receiver
check_example_received "$out" "$COUNT" "$runs" "the README's build lines"
