"""Drive a running starcast service over loopback with a bounded load; record latency and rate.

    .venv/bin/python benchmarks/serve/run.py [--events 100000] [--requests 400]
        [--workers 1,2] [--models lstm,transformer]

For each model (`--models`) it trains on synthetic data, starts `starcast serve` with the
states computed from the history (`--history`), with 1 and then 2 worker processes
(`--workers`), and for each, for concurrency 1, 8 and 32, sends a fixed number of requests of
each kind: predict with 1 query, predict with 100, and events (1 and 100 per request, every
worker posting its own users in time order). One more measures a single predict of 10,000
queries. Results: benchmarks/serve/results.json, with the machine they ran on.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from starcast import Forecaster, SynthConfig, generate

OUT = Path(__file__).parent / "results.json"
RATED: set[tuple[str, str]] = set()  # (user, item) pairs of the history and of posted events


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--workers", default="1,2", help="server processes, one run each")
    parser.add_argument("--models", default="lstm", help="comma-separated, one run each")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    data = generate(SynthConfig(users=args.events // 25, items=args.events // 100,
                                events=args.events, seed=0))
    data.events.write_parquet(work / "history.parquet")
    result = {"machine": _machine(), "history_events": args.events,
              "requests_per_level": args.requests, "runs": []}
    for model in args.models.split(","):
        Forecaster(model, seed=0, epochs=1).fit(data.events, None).save(work / "model")
        for workers in map(int, args.workers.split(",")):
            RATED.clear()
            RATED.update(data.events.select("user", "item").iter_rows())
            (work / "state.db").unlink(missing_ok=True)
            server, url = _start(work, workers)
            try:
                result["runs"].append({"model": model, "workers": workers,
                                       "levels": _measure(url, data, args),
                                       "batch_10000": _big_batch(url, data)})
            finally:
                server.terminate()
                server.wait()
            OUT.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def _measure(url: str, data, args) -> list[dict]:
    users = data.events["user"].unique().sort().to_list()
    items = data.events["item"].unique().sort().to_list()
    clock = itertools.count(int(data.events["ts"].max()) + 1)
    rows = []
    for concurrency in (1, 8, 32):
        own = [users[w::concurrency] for w in range(concurrency)]
        kinds = {
            "predict x1": lambda w, r: ("/v1/predict", {"queries": _queries(users, items, r, 1)}),
            "predict x100": lambda w, r: ("/v1/predict",
                                          {"queries": _queries(users, items, r, 100)}),
            "events x1": lambda w, r, own=own: ("/v1/events",
                                                {"events": _events(own[w], items, r, 1, clock)}),
            "events x100": lambda w, r, own=own: ("/v1/events",
                                                  {"events": _events(own[w], items, r, 100,
                                                                     clock)}),
        }
        for kind, body in kinds.items():
            row = _load(url, body, concurrency, args.requests)
            row |= {"kind": kind, "concurrency": concurrency}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def _load(url: str, body, concurrency: int, requests: int) -> dict:
    """`requests` requests from `concurrency` workers with their own keep-alive connections."""
    latencies: list[float] = []

    async def worker(w: int) -> None:
        rng = np.random.default_rng(w)
        async with _Connection(url) as connection:
            for _ in range(requests // concurrency):
                path, payload = body(w, rng)
                seconds, _ = await connection.post(path, json.dumps(payload).encode())
                latencies.append(seconds)

    async def everyone() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        return time.perf_counter() - start

    wall = asyncio.run(everyone())
    ms = np.array(latencies) * 1000
    return {"requests": len(ms), "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)), "p99_ms": float(np.percentile(ms, 99)),
            "requests_per_second": len(ms) / wall}


class _Connection:
    """A lean HTTP/1.1 keep-alive client on asyncio streams: the load generator shares the
    server's cores, so its own cost per request (tens of microseconds, against about a
    millisecond for an httpx client) should not be what the latencies measure."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)

    async def __aenter__(self) -> _Connection:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *exc) -> None:
        self.writer.close()

    async def post(self, path: str, body: bytes) -> tuple[float, bytes]:
        """(seconds from sending to the whole answer, the answer's body)."""
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json"
                f"\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        start = time.perf_counter()
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        answer = await self.reader.readexactly(length)
        elapsed = time.perf_counter() - start
        if b" 200 " not in status_line:
            raise RuntimeError(f"{path}: {status_line!r} {answer[:200]!r}")
        return elapsed, answer


def _queries(users, items, rng, n: int) -> list[dict]:
    """Products the customer has not rated: what a shop asks for (a rated pair is answered
    the slower, exact batch way, because the visibility rule hides the customer's own rating)."""
    out = []
    while len(out) < n:
        user, item = users[rng.integers(len(users))], items[rng.integers(len(items))]
        if (user, item) not in RATED:
            out.append({"user": user, "item": item})
    return out


def _events(users, items, rng, n: int, clock) -> list[dict]:
    ts = next(clock)  # one ts per request, later than any before it: never out of order
    events = [{"user": users[rng.integers(len(users))], "item": items[rng.integers(len(items))],
               "rating": float(rng.integers(1, 6)), "ts": ts} for _ in range(n)]
    RATED.update((e["user"], e["item"]) for e in events)
    return events


def _big_batch(url: str, data) -> dict:
    rng = np.random.default_rng(0)
    users = data.events["user"].unique().sort().to_list()
    items = data.events["item"].unique().sort().to_list()
    body = json.dumps({"queries": _queries(users, items, rng, 10_000)}).encode()

    async def five() -> list[float]:
        async with _Connection(url) as connection:
            out = []
            for _ in range(5):
                seconds, answer = await connection.post("/v1/predict", body)
                assert len(json.loads(answer)["predictions"]) == 10_000
                out.append(seconds * 1000)
            return out

    timings = asyncio.run(five())
    return {"queries": 10_000, "ms_each_of_5": timings, "median_ms": float(np.median(timings))}


def _start(work: Path, workers: int):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "starcast", "serve", "--model", str(work / "model"),
         "--state", str(work / "state.db"), "--history", str(work / "history.parquet"),
         "--port", str(port), "--workers", str(workers)],
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return server, url
        except httpx.HTTPError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("server did not start")


def _machine() -> str:
    import os

    return (f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()};"
            " client (asyncio, raw HTTP/1.1 keep-alive) and server on the same machine")


if __name__ == "__main__":
    main()
