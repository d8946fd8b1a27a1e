# Shell helpers shared by the demo and the example tests (source it; bash).

# Builds the release library and the SONAME link programs linked with -ledgebuf look for.
build_lib() {
  cargo build --release --lib --quiet
  ln -sf libedgebuf.so target/release/libedgebuf.so.0
}

# Prints a free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_receiver PORT OUT: starts the reference receiver in the background, sets $rpid and
# waits (bounded) until it accepts connections.
start_receiver() {
  python3 scripts/receiver.py --port "$1" --out "$2" &
  rpid=$!
  for _ in $(seq 1 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "the receiver did not start on 127.0.0.1:$1" >&2
  return 1
}
