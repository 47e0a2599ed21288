#!/usr/bin/env python3
"""bench/slow_clients.py — N viewers that request a large object and read a few bytes now and then.

    python3 bench/slow_clients.py --addr 127.0.0.1:18602 --path /d8m/00000 --count 1000 \
        --read-bytes 32 --every-s 5 --hold-s 20 [--rcvbuf 4096]

Each client connects with a small receive buffer (SO_RCVBUF before connect), sends one GET, then
reads READ_BYTES every EVERY_S seconds until HOLD_S seconds have passed, and closes. Prints one
JSON line: clients connected, bytes read in all, clients the server closed before the end.
"""

import argparse
import asyncio
import json
import random
import socket
import time


async def client(host, port, path, rcvbuf, read_bytes, every_s, until, stats):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_connect(s, (host, port))
        stats["connected"] += 1
        await loop.sock_sendall(s, f"GET {path} HTTP/1.1\r\nHost: bench.test\r\n\r\n".encode())
        # Viewers started together do not read in step: each reads at its own phase of EVERY_S
        # (a burst of 1,000 reads at once every EVERY_S would load the client's core, not the
        # node, and show up as the probe's latency).
        await asyncio.sleep(random.uniform(0, every_s))
        while time.monotonic() < until:
            data = await asyncio.wait_for(loop.sock_recv(s, read_bytes), timeout=every_s)
            if not data:
                stats["closed_by_server"] += 1
                return
            stats["bytes"] += len(data)
            await asyncio.sleep(every_s)
    except (ConnectionError, asyncio.TimeoutError, OSError):
        stats["errors"] += 1
    finally:
        s.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--path", required=True)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--read-bytes", type=int, default=32)
    ap.add_argument("--every-s", type=float, default=5.0)
    ap.add_argument("--hold-s", type=float, default=20.0)
    ap.add_argument("--rcvbuf", type=int, default=4096)
    a = ap.parse_args()
    host, port = a.addr.rsplit(":", 1)
    stats = {"connected": 0, "bytes": 0, "closed_by_server": 0, "errors": 0}
    until = time.monotonic() + a.hold_s
    tasks = []
    for _ in range(a.count):
        tasks.append(asyncio.create_task(
            client(host, int(port), a.path, a.rcvbuf, a.read_bytes, a.every_s, until, stats)))
        await asyncio.sleep(0.001)
    await asyncio.gather(*tasks)
    print(json.dumps(stats), flush=True)


asyncio.run(main())
