#!/usr/bin/env python3
"""The test sink behind the collector (tests/otlp/run.sh): an HTTP server on 127.0.0.1 that
writes each POSTed body (gzip undone when the collector compressed it) to OUT_DIR as
NNNNNN.json, then answers 200 with an empty ExportLogsServiceResponse.

While the control file contains "down", every POST is answered 503 and nothing is kept (the
exporter failure the test plays during delivery). Counts go to OUT_DIR/../sink.log, one line
a request.

    sink.py OUT_DIR PORT_FILE CONTROL_FILE

Binds an ephemeral port and writes it to PORT_FILE once it listens. Stdlib only."""

import gzip
import http.server
import os
import sys
import threading
import zlib


class Sink(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, out_dir, control_file):
        super().__init__(("127.0.0.1", 0), Handler)
        self.out_dir = out_dir
        self.control_file = control_file
        self.lock = threading.Lock()
        self.kept = 0
        self.refused = 0
        self.log = open(os.path.join(os.path.dirname(out_dir.rstrip("/")) or ".", "sink.log"), "a")

    def down(self):
        try:
            with open(self.control_file) as f:
                return f.read().strip() == "down"
        except OSError:
            return False


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # the default writes every request to stderr
        pass

    def answer(self, status, body=b"", ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        srv = self.server
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > 64 * 1024 * 1024:
            self.answer(413)
            return
        body = self.rfile.read(length)
        if srv.down():
            with srv.lock:
                srv.refused += 1
                srv.log.write("503 %s %d\n" % (self.path, length))
                srv.log.flush()
            self.answer(503, b'{"message":"sink down"}')
            return
        enc = (self.headers.get("Content-Encoding") or "").strip().lower()
        try:
            if enc == "gzip":
                body = gzip.decompress(body)
            elif enc == "deflate":
                body = zlib.decompress(body)
            elif enc not in ("", "identity"):
                raise ValueError("unsupported Content-Encoding " + enc)
        except (OSError, ValueError, EOFError, zlib.error) as e:
            self.answer(400, ('{"message":"%s"}' % str(e).replace('"', "'")).encode())
            return
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        with srv.lock:
            srv.kept += 1
            n = srv.kept
            name = os.path.join(srv.out_dir, "%06d.json" % n)
            tmp = name + ".tmp"
            with open(tmp, "wb") as f:
                f.write(body)
            os.replace(tmp, name)
            srv.log.write("200 %s %s %d %s\n" % (self.path, ctype, len(body), os.path.basename(name)))
            srv.log.flush()
        if ctype != "application/json":
            # The harness asks the exporter for JSON; anything else is kept but flagged.
            sys.stderr.write("sink: request %d has Content-Type %r\n" % (n, ctype))
        self.answer(200, b"{}")


def main():
    if len(sys.argv) != 4:
        sys.stderr.write("usage: sink.py OUT_DIR PORT_FILE CONTROL_FILE\n")
        return 2
    out_dir, port_file, control = sys.argv[1:]
    os.makedirs(out_dir, exist_ok=True)
    srv = Sink(out_dir, control)
    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.replace(tmp, port_file)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
