#!/usr/bin/env python3
"""bench/origin.py — a small dependency-free origin for the harness's smoke mode.

The measured runs use nginx as the origin (fast, sendfile); this one is used when nginx is not
installed (bench/run.sh --smoke on a fresh machine). It serves the files under --root with
`Cache-Control: max-age=3600`, answers any /miss/... path with the 1 KiB body of /1k/0000, keeps
connections alive (HTTP/1.1), and appends one line per request ("METHOD PATH STATUS") to --log,
so the harness counts origin requests the same way as with nginx's access log.

    python3 bench/origin.py --listen 127.0.0.1:18401 --root DIR --log FILE [--pid-file FILE]
"""

import argparse
import http.server
import os
import socketserver
import sys
import threading



class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "bench-origin"
    disable_nagle_algorithm = True  # head and body are separate writes: no 40 ms delayed-ACK stall

    def log_message(self, fmt, *args):  # quiet stderr; the access log is written below
        pass

    def _resolve(self):
        path = self.path.split("?", 1)[0]
        if path.startswith("/miss/"):
            path = "/1k/0000"
        rel = os.path.normpath(path).lstrip("/")
        if rel.startswith(".."):
            return None
        full = os.path.join(self.server.root, rel)
        return full if os.path.isfile(full) else None

    def _log(self, status):
        line = f"{self.command} {self.path} {status}\n"
        with self.server.log_lock:
            self.server.log_file.write(line)
            self.server.log_file.flush()

    def _serve(self, send_body):
        full = self._resolve()
        if full is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            self._log(404)
            return
        with open(full, "rb") as f:
            body = f.read()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=3600")
        self.end_headers()
        if send_body:
            self.wfile.write(body)
        self._log(200)

    def do_GET(self):
        self._serve(True)

    def do_HEAD(self):
        self._serve(False)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", required=True, help="HOST:PORT (loopback)")
    ap.add_argument("--root", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--pid-file")
    a = ap.parse_args()
    host, port = a.listen.rsplit(":", 1)
    srv = Server((host, int(port)), Handler)
    srv.root = os.path.abspath(a.root)
    srv.log_file = open(a.log, "a", encoding="ascii")
    srv.log_lock = threading.Lock()
    if a.pid_file:
        with open(a.pid_file, "w", encoding="ascii") as f:
            f.write(f"{os.getpid()}\n")
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
