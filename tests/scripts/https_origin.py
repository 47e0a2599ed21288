#!/usr/bin/env python3
"""An HTTPS origin for tests/tests/tls.rs: Python's own TLS server (OpenSSL), dual-stack on an
ephemeral port that it prints on its first line. Every GET answers a deterministic body
((path bytes) repeated to ?size=N, default 10000) cacheable for 300 s, and says in headers the
SNI name of the connection's handshake and how many handshakes the server has completed.
Paths with /unframed end the body by closing the connection: after a TLS close_notify when the
path also holds "notify", with a bare TCP close otherwise (what a truncation looks like).

usage: https_origin.py CERT KEY
"""
import http.server
import socket
import ssl
import sys
import threading
import urllib.parse

lock = threading.Lock()
handshakes = 0
last_sni = ""


def on_sni(sslobj, name, ctx):
    global handshakes, last_sni
    with lock:
        handshakes += 1
        last_sni = name or ""


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        size = int(urllib.parse.parse_qs(url.query).get("size", ["10000"])[0])
        unit = url.path.encode()
        body = (unit * (size // len(unit) + 1))[:size]
        with lock:
            sni, n = last_sni, handshakes
        self.send_response(200)
        # /unframed-*: the body ends where the connection does (no Content-Length); with
        # "notify" in the path the end is a TLS close_notify, otherwise a bare TCP close.
        unframed = "/unframed" in url.path
        if not unframed:
            self.send_header("Content-Length", str(len(body)))
        else:
            self.send_header("Connection", "close")
        self.send_header("Cache-Control", "max-age=300")
        self.send_header("X-Origin-SNI", sni)
        self.send_header("X-Origin-Handshakes", str(n))
        self.end_headers()
        self.wfile.write(body)
        if unframed:
            self.wfile.flush()
            self.close_connection = True
            if "notify" in url.path:
                self.connection.unwrap()

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def main():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    ctx.sni_callback = on_sni
    srv = Server(("::", 0), Handler)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print(srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
