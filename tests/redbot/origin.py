#!/usr/bin/env python3
"""A small, HTTP-clean origin for the REDbot check (scripts/redbot_check.sh).

    origin.py PORT_FILE [LOG_FILE]

Binds 127.0.0.1 port 0 (the kernel picks a free port; nothing else can take it) and, once it
is listening, writes the port it got to PORT_FILE (written to PORT_FILE.tmp, then renamed, so a
reader never sees a partial number).

Serves
  /vod/seg00001.ts     video/mp2t, 188*2000 bytes, Cache-Control: max-age=300, strong ETag,
                       Last-Modified, Accept-Ranges: bytes; single byte ranges (206 / 416),
                       If-None-Match / If-Modified-Since (304), If-Range, HEAD
  /vod/index.m3u8      application/vnd.apple.mpegurl, Cache-Control: max-age=2, same validators
Everything else is 404. Every request is logged (one JSON object a line) to LOG_FILE when given,
so the check can show what reached the origin through Arrow.
"""
import email.utils
import gzip
import hashlib
import json
import os
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LAST_MODIFIED_TS = 1700000000  # 2023-11-14: well in the past, so Last-Modified < Date
LAST_MODIFIED = email.utils.formatdate(LAST_MODIFIED_TS, usegmt=True)


def ts_packet(i):
    # 188-byte MPEG-TS packets: sync byte 0x47, null PID 0x1FFF, payload only, counter.
    return bytes([0x47, 0x1F, 0xFF, 0x10 | (i & 0x0F)]) + bytes((i + k) & 0xFF for k in range(184))


SEGMENT = b"".join(ts_packet(i) for i in range(2000))
MANIFEST = (
    "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1\n"
    "#EXT-X-PLAYLIST-TYPE:VOD\n#EXTINF:2.000,\nseg00001.ts\n#EXT-X-ENDLIST\n"
).encode()

RESOURCES = {
    "/vod/seg00001.ts": (SEGMENT, "video/mp2t", "max-age=300"),
    "/vod/index.m3u8": (MANIFEST, "application/vnd.apple.mpegurl", "max-age=2"),
    # Vary variants (Arrow stores these as variants):
    #   gz/: gzip when the request accepts it, Vary: Accept-Encoding, a distinct ETag per coding
    "/vod/gz/index.m3u8": (MANIFEST, "application/vnd.apple.mpegurl", "max-age=2"),
    #   cors/: Access-Control-Allow-Origin echoes Origin, Vary: Origin
    "/vod/cors/seg00001.ts": (SEGMENT, "video/mp2t", "max-age=300"),
}
ETAGS = {p: '"%s"' % hashlib.sha1(b).hexdigest()[:16] for p, (b, _, _) in RESOURCES.items()}
GZIPPED = {p: gzip.compress(b, mtime=0) for p, (b, _, _) in RESOURCES.items() if "/gz/" in p}
LOG = None


def etag_list_matches(header, etag, weak_ok):
    if header.strip() == "*":
        return True
    for tag in (t.strip() for t in header.split(",")):
        if weak_ok:
            if tag.removeprefix("W/") == etag.removeprefix("W/"):
                return True
        elif tag == etag:
            return True
    return False


def parse_date(value):
    try:
        d = email.utils.parsedate_to_datetime(value)
        return d.timestamp() if d else None
    except (TypeError, ValueError, IndexError):
        return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "redbot-origin/1"

    def log_message(self, fmt, *args):  # quiet stderr
        pass

    def log_request_json(self, status):
        if LOG is None:
            return
        rec = {
            "t": round(time.time(), 3),
            "method": self.command,
            "path": self.path,
            "status": status,
            "conditional": any(
                h in self.headers for h in ("If-None-Match", "If-Modified-Since")
            ),
            "range": self.headers.get("Range"),
            "headers": dict(self.headers.items()),
        }
        LOG.write(json.dumps(rec) + "\n")
        LOG.flush()

    def wants_gzip(self, path):
        if path not in GZIPPED:
            return False
        for item in self.headers.get("Accept-Encoding", "").split(","):
            parts = [x.strip() for x in item.split(";")]
            if parts[0].lower() in ("gzip", "x-gzip"):
                q = 1.0
                for prm in parts[1:]:
                    if prm.lower().startswith("q="):
                        try:
                            q = float(prm[2:])
                        except ValueError:
                            q = 0.0
                return q > 0
        return False

    def representation(self, path):
        """(body, etag) of the representation this request selects."""
        if self.wants_gzip(path):
            return GZIPPED[path], ETAGS[path][:-1] + '-gz"'
        return RESOURCES[path][0], ETAGS[path]

    def send_common(self, path):
        _, ctype, cc = RESOURCES[path]
        self.send_header("Content-Type", ctype)
        self.send_header("Cache-Control", cc)
        self.send_header("ETag", self.representation(path)[1])
        self.send_header("Last-Modified", LAST_MODIFIED)
        self.send_header("Accept-Ranges", "bytes")
        if path in GZIPPED:
            self.send_header("Vary", "Accept-Encoding")
            if self.wants_gzip(path):
                self.send_header("Content-Encoding", "gzip")
        if "/cors/" in path:
            self.send_header("Vary", "Origin")
            if "Origin" in self.headers:
                self.send_header("Access-Control-Allow-Origin", self.headers["Origin"])

    def do_HEAD(self):
        self.handle_get(head=True)

    def do_GET(self):
        self.handle_get(head=False)

    def handle_get(self, head):
        path = self.path.split("?", 1)[0]
        if path not in RESOURCES:
            body = b"not found\n"
            self.send_response(404)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "max-age=10")
            self.end_headers()
            if not head:
                self.wfile.write(body)
            self.log_request_json(404)
            return
        body, etag = self.representation(path)
        h = self.headers
        # Conditional GET (RFC 9110 13.2.2 order: If-None-Match wins over If-Modified-Since).
        not_modified = False
        if "If-None-Match" in h:
            not_modified = etag_list_matches(h["If-None-Match"], etag, weak_ok=True)
        elif "If-Modified-Since" in h:
            ims = parse_date(h["If-Modified-Since"])
            not_modified = ims is not None and LAST_MODIFIED_TS <= ims
        if not_modified:
            self.send_response(304)
            self.send_common(path)
            self.end_headers()
            self.log_request_json(304)
            return
        # Range (single byte range; If-Range with a strong ETag or the exact date).
        rng = h.get("Range")
        if rng and "If-Range" in h:
            ir = h["If-Range"].strip()
            if ir.startswith('"') or ir.startswith("W/"):
                if ir != etag:
                    rng = None
            elif ir != LAST_MODIFIED:
                rng = None
        if rng:
            m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", rng)
            if m and (m.group(1) or m.group(2)):
                n = len(body)
                if m.group(1):
                    first = int(m.group(1))
                    last = int(m.group(2)) if m.group(2) else n - 1
                    last = min(last, n - 1)
                else:
                    first, last = max(0, n - int(m.group(2))), n - 1
                if first >= n or first > last:
                    self.send_response(416)
                    self.send_common(path)
                    self.send_header("Content-Range", "bytes */%d" % n)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    self.log_request_json(416)
                    return
                part = body[first : last + 1]
                self.send_response(206)
                self.send_common(path)
                self.send_header("Content-Range", "bytes %d-%d/%d" % (first, last, n))
                self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                if not head:
                    self.wfile.write(part)
                self.log_request_json(206)
                return
            # multi-range or malformed: ignore Range, answer 200 (allowed by RFC 9110 14.2)
        self.send_response(200)
        self.send_common(path)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)
        self.log_request_json(200)


def report_port(port_file, port):
    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.replace(tmp, port_file)


def main():
    global LOG
    port_file = sys.argv[1]
    if len(sys.argv) > 2:
        LOG = open(sys.argv[2], "a", buffering=1)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # bound and listening from here on
    srv.daemon_threads = True
    port = srv.server_address[1]
    report_port(port_file, port)
    print("origin listening on 127.0.0.1:%d" % port, flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
