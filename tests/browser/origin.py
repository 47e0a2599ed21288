#!/usr/bin/env python3
"""Media origin for the browser play test (scripts/browser_play.sh).

    origin.py PORT_FILE ROOT_DIR LOG_FILE

Binds 127.0.0.1 port 0 (the kernel picks a free port; nothing else can take it) and, once it
is listening, writes the port it got to PORT_FILE (written to PORT_FILE.tmp, then renamed, so a
reader never sees a partial number).

Serves files under ROOT_DIR (the ffmpeg-made HLS and DASH titles) with
  * Access-Control-Allow-Origin: <the request's Origin> (and Vary: Origin, on every answer,
    with or without an Origin), Access-Control-Expose-Headers for the range/caching fields;
    OPTIONS preflights are answered (204)
  * Cache-Control: max-age=2 for playlists/manifests (.m3u8, .mpd), max-age=3600 for segments
  * strong ETag + Last-Modified, 304 on If-None-Match / If-Modified-Since
  * single byte ranges (206 / 416), If-Range
and logs every request, one JSON object a line, to LOG_FILE: time, method, path, status,
whether it was conditional, Range, Origin.
"""
import email.utils
import json
import mimetypes
import os
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = None
LOG = None
TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".mpd": "application/dash+xml",
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
}
PLAYLIST_EXT = (".m3u8", ".mpd")


def parse_date(value):
    try:
        d = email.utils.parsedate_to_datetime(value)
        return d.timestamp() if d else None
    except (TypeError, ValueError, IndexError):
        return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "browser-origin/1"

    def log_message(self, fmt, *args):
        pass

    def record(self, status):
        rec = {
            "t": round(time.time(), 3),
            "method": self.command,
            "path": self.path,
            "status": status,
            "conditional": "If-None-Match" in self.headers or "If-Modified-Since" in self.headers,
            "range": self.headers.get("Range"),
            "origin": self.headers.get("Origin"),
        }
        LOG.write(json.dumps(rec) + "\n")
        LOG.flush()

    def cors(self):
        self.send_header("Vary", "Origin")
        if "Origin" in self.headers:
            self.send_header("Access-Control-Allow-Origin", self.headers["Origin"])
            self.send_header(
                "Access-Control-Expose-Headers",
                "Content-Length, Content-Range, ETag, Last-Modified, Age, X-Cache",
            )

    def simple(self, status, text=b""):
        self.send_response(status)
        self.cors()
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(text)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(text)
        self.record(status)

    def do_OPTIONS(self):
        self.send_response(204)
        self.cors()
        self.send_header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
        req = self.headers.get("Access-Control-Request-Headers")
        if req:
            self.send_header("Access-Control-Allow-Headers", req)
        self.send_header("Access-Control-Max-Age", "600")
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.record(204)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/":
            return self.simple(200, b"ok\n")
        full = os.path.realpath(os.path.join(ROOT, path.lstrip("/")))
        if not full.startswith(ROOT + os.sep) or not os.path.isfile(full):
            return self.simple(404, b"not found\n")
        st = os.stat(full)
        etag = '"%x-%x"' % (st.st_mtime_ns, st.st_size)
        lm_ts = int(st.st_mtime)
        ext = os.path.splitext(full)[1]
        ctype = TYPES.get(ext) or mimetypes.guess_type(full)[0] or "application/octet-stream"
        cc = "max-age=2" if ext in PLAYLIST_EXT else "max-age=3600"

        def head(status, length, extra=()):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Cache-Control", cc)
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", email.utils.formatdate(lm_ts, usegmt=True))
            self.send_header("Accept-Ranges", "bytes")
            self.cors()
            for k, v in extra:
                self.send_header(k, v)
            if length is not None:
                self.send_header("Content-Length", str(length))
            self.end_headers()

        h = self.headers
        if "If-None-Match" in h:
            nm = h["If-None-Match"].strip() == "*" or etag in [
                t.strip().removeprefix("W/") for t in h["If-None-Match"].split(",")
            ]
        elif "If-Modified-Since" in h:
            ims = parse_date(h["If-Modified-Since"])
            nm = ims is not None and lm_ts <= ims
        else:
            nm = False
        if nm:
            head(304, None)
            self.record(304)
            return
        with open(full, "rb") as f:
            body = f.read()
        n = len(body)
        rng = h.get("Range")
        if rng and "If-Range" in h and h["If-Range"].strip() not in (
            etag, email.utils.formatdate(lm_ts, usegmt=True)
        ):
            rng = None
        m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", rng) if rng else None
        if m and (m.group(1) or m.group(2)):
            if m.group(1):
                first = int(m.group(1))
                last = min(int(m.group(2)) if m.group(2) else n - 1, n - 1)
            else:
                first, last = max(0, n - int(m.group(2))), n - 1
            if first >= n or first > last:
                head(416, 0, [("Content-Range", "bytes */%d" % n)])
                self.record(416)
                return
            head(206, last - first + 1, [("Content-Range", "bytes %d-%d/%d" % (first, last, n))])
            if self.command != "HEAD":
                self.wfile.write(body[first : last + 1])
            self.record(206)
            return
        head(200, n)
        if self.command != "HEAD":
            self.wfile.write(body)
        self.record(200)


def report_port(port_file, port):
    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.replace(tmp, port_file)


def main():
    global ROOT, LOG
    port_file, ROOT, log = sys.argv[1], os.path.realpath(sys.argv[2]), sys.argv[3]
    LOG = open(log, "a", buffering=1)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # bound and listening from here on
    srv.daemon_threads = True
    port = srv.server_address[1]
    report_port(port_file, port)
    print("origin listening on 127.0.0.1:%d, root %s" % (port, ROOT), flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
