"""Open-loop HTTP load at a fixed request rate, in its own process: prints latency percentiles as JSON.

Request i is due at start + i / rate whether or not earlier ones have returned; its latency counts from
that due time, so a server that falls behind is charged for the queueing (no coordinated omission).
A raw HTTP/1.1 keep-alive client on asyncio keeps the client's own overhead small.

Usage: python loadgen.py URL RATE SECONDS METHOD PATH [BODY] [users=N] ["Header: value" ...]
PATH and BODY (JSON, starting with "{") may contain {user}: a user id drawn from 1..N (default 1000).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from urllib.parse import urlsplit

import numpy as np

CONNECTIONS = 64


async def _connection(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(host, port)


async def _request(conn, raw: bytes) -> int:  # noqa: ANN001
    reader, writer = conn
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return status


async def run(url: str, rate: float, seconds: float, method: str, path: str, body: str | None,
              headers: list[str], users: int) -> dict:
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(CONNECTIONS):
        pool.put_nowait(await _connection(host, port))
    rng = random.Random(1)
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    def build(user: int) -> bytes:
        target = path.replace("{user}", str(user))
        payload = body.replace("{user}", str(user)).encode() if body else b""
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}", *headers]
        if body:
            lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload

    async def one(due: float, raw: bytes) -> None:
        conn = await pool.get()
        try:
            status = await _request(conn, raw)
        except (ConnectionError, asyncio.IncompleteReadError):
            status = 599
            conn = await _connection(host, port)
        pool.put_nowait(conn)
        latencies.append(time.perf_counter() - due)
        statuses[status] = statuses.get(status, 0) + 1

    total = int(rate * seconds)
    start = time.perf_counter() + 0.05
    tasks = []
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due, build(rng.randint(1, users)))))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {"rate": rate, "requests": total, "achieved_rps": round(total / elapsed, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "statuses": statuses}


def main(argv: list[str]) -> None:
    """Run the load described by the command line and print the result as one JSON line."""
    url, rate, seconds, method, path = argv[:5]
    rest = argv[5:]
    users = 1000
    body = None
    headers = []
    for item in rest:
        if item.startswith("users="):
            users = int(item.removeprefix("users="))
        elif item.startswith("{") or item == "-":
            body = None if item == "-" else item
        else:
            headers.append(item)
    result = asyncio.run(run(url, float(rate), float(seconds), method, path, body, headers, users))
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
