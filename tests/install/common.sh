# The prologue of every install test (source it from tests/install/*.sh; bash): stops at the
# first failing command and says which, works from the repository root, sets `version` (from
# Cargo.toml) and `root`, and starts the reference receiver (scripts/common.sh: with_receiver
# gives $tmp, $out and $port, and cleans up at exit).
set -euo pipefail
trap 'echo "FAIL: $0 line $LINENO: $BASH_COMMAND" >&2' ERR
cd "$(dirname "$0")/../.."
root=$PWD
. scripts/common.sh
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
cargo build --release --quiet --bin edgebuf
with_receiver
