#!/usr/bin/env python3
"""bench/idle_clients.py — N keep-alive viewers that each fetch one object and then sit idle.

    python3 bench/idle_clients.py --addr 127.0.0.1:18802 --path /1k/0000 --count 3000 \
        --hold-s 15 --ready-file F [--tls]

Each client connects, sends one GET (HTTP/1.1, kept alive), reads the whole response (by its
Content-Length) and then sends nothing for HOLD_S seconds; when all are connected and answered it
writes READY_FILE (the caller samples the server's memory meanwhile). After the hold each client
sends a second GET on the same connection and reads its answer: a server that lost or broke an
idle connection shows up as an error. Prints one JSON line: connected, first and second answers
with status 200, errors.
"""

import argparse
import asyncio
import json
import ssl
import time


async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    await reader.readexactly(length)
    return status


async def client(host, port, path, stats, all_answered, hold_done, tls):
    try:
        if tls is None:
            reader, writer = await asyncio.open_connection(host, port)
        else:
            reader, writer = await asyncio.open_connection(host, port, ssl=tls, server_hostname="bench.test")
    except OSError:
        stats["errors"] += 1
        all_answered()
        return
    stats["connected"] += 1
    request = f"GET {path} HTTP/1.1\r\nHost: bench.test\r\n\r\n".encode()
    try:
        writer.write(request)
        await writer.drain()
        if await read_response(reader) == 200:
            stats["first_ok"] += 1
        all_answered()
        await hold_done.wait()
        writer.write(request)
        await writer.drain()
        if await read_response(reader) == 200:
            stats["second_ok"] += 1
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError, ValueError, IndexError):
        stats["errors"] += 1
    finally:
        writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--path", required=True)
    ap.add_argument("--count", type=int, default=3000)
    ap.add_argument("--hold-s", type=float, default=15.0)
    ap.add_argument("--ready-file", required=True)
    ap.add_argument("--tls", action="store_true", help="HTTPS (the certificate is not checked)")
    a = ap.parse_args()
    tls = None
    if a.tls:
        tls = ssl.create_default_context()
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
    host, port = a.addr.rsplit(":", 1)
    stats = {"connected": 0, "first_ok": 0, "second_ok": 0, "errors": 0}
    left = [a.count]
    ready = asyncio.Event()
    hold_done = asyncio.Event()

    def all_answered():
        left[0] -= 1
        if left[0] == 0:
            ready.set()

    tasks = []
    for i in range(a.count):
        tasks.append(asyncio.create_task(client(host, int(port), a.path, stats, all_answered, hold_done, tls)))
        if i % 200 == 199:
            await asyncio.sleep(0.05)  # connect in bursts the listen backlog takes
    await ready.wait()
    with open(a.ready_file, "w") as f:
        f.write(f"{time.time()}\n")
    await asyncio.sleep(a.hold_s)
    hold_done.set()
    await asyncio.gather(*tasks)
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
