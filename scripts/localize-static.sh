#!/usr/bin/env bash
# localize-static.sh IN.a OUT.a [TOOL_PREFIX [EXTRA.a ...]]
# Turns cargo's libedgebuf.a into the archive that is shipped: one relocatable object in which
# only the edgebuf_* functions of include/edgebuf.h stay global. The bundled SQLite, ring and
# Rust's std become local, so a program or firmware image that links its own SQLite keeps its
# own. Debug sections and the LLVM bitcode sections (which binutils' LTO plugin cannot read)
# are dropped.
# TOOL_PREFIX selects the binutils of a cross target (aarch64-linux-gnu-, ...). EXTRA archives
# are folded in too (musl: Rust's own libunwind, which a musl staticlib leaves out and which the
# host gcc's libgcc_eh cannot stand in for).
set -euo pipefail
in=$1 out=$2 p=${3:-}
extra=("${@:4}")
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
grep -o 'edgebuf_[a-z_]*(' "$root/include/edgebuf.h" | tr -d '(' | sort -u >"$work/keep.txt"
"${p}ld" -r --whole-archive "$in" ${extra[@]+"${extra[@]}"} -o "$work/all.o"
"${p}objcopy" --keep-global-symbols="$work/keep.txt" --strip-debug --remove-section=.llvmbc \
  --remove-section=.llvmcmd "$work/all.o" "$work/edgebuf.o"
rm -f "$out"
"${p}ar" rcs "$out" "$work/edgebuf.o"
