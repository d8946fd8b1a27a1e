#!/usr/bin/env python3
"""A reference receiver for edgebuf batches (demos and tests).

POST bodies are JSON arrays of envelopes or NDJSON, optionally gzip-encoded. Each new envelope
(deduplicated on (source, id)) is appended as one line to --out; duplicates are counted in
--out + ".dups". Ids already in --out are loaded at start, so the receiver can be killed and
restarted (an outage) without losing its dedup state. Listens only on the address given.
"""
import argparse
import gzip
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--listen", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    seen = set()
    if os.path.exists(args.out):
        with open(args.out) as f:
            for line in f:
                e = json.loads(line)
                seen.add((e["source"], e["id"]))
    lock = threading.Lock()
    out = open(args.out, "a")
    dups = open(args.out + ".dups", "a")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            try:
                parsed = json.loads(body)
                envs = parsed if isinstance(parsed, list) else [parsed]
            except ValueError:
                envs = [json.loads(l) for l in body.splitlines() if l.strip()]
            with lock:
                for e in envs:
                    key = (e["source"], e["id"])
                    if key in seen:
                        dups.write(e["id"] + "\n")
                    else:
                        seen.add(key)
                        out.write(json.dumps(e, separators=(",", ":")) + "\n")
                out.flush()
                dups.flush()
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer((args.listen, args.port), Handler)
    srv.daemon_threads = True
    srv.serve_forever()


if __name__ == "__main__":
    main()
