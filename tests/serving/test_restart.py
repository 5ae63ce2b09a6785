"""Real server processes: killed with SIGKILL mid-stream and restarted on the same state
file; several workers writing one state file."""

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import polars as pl
import pytest

from starcast import Forecaster
from starcast.data.synth import SynthConfig, generate


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(model, state, port, *options: str):
    process = subprocess.Popen(
        [sys.executable, "-m", "starcast", "serve", "--model", str(model), "--state", str(state),
         "--port", str(port), *options],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
        if process.poll() is not None:
            raise RuntimeError(process.stderr.read().decode())
    process.kill()
    raise RuntimeError("server did not come up in 30 s")


def events_json(frame):
    return [dict(zip(("user", "item", "rating", "ts"), r, strict=True))
            for r in frame.select("user", "item", "rating", "ts").iter_rows()]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_killed_server_loses_no_acknowledged_event(tmp_path, name, quick) -> None:
    data = generate(SynthConfig(users=150, items=60, events=4_000, seed=9))
    events = data.events.sort(["ts", "user", "item"])
    model = Forecaster(name, quick, seed=0, epochs=1).fit(events, None)
    model.save(tmp_path / "model")
    state, port = tmp_path / "state.db", free_port()
    process, url = start(tmp_path / "model", state, port)
    acknowledged = events.head(2_000)
    for s in range(0, acknowledged.height, 200):
        batch = events_json(acknowledged[s : s + 200])
        reply = httpx.post(f"{url}/v1/events", json={"events": batch})
        assert reply.status_code == 200
    ts = int(events["ts"].max()) + 60
    queries = [{"user": u, "item": i, "ts": ts}
               for u, i in events.select("user", "item").tail(100).iter_rows()]
    before = httpx.post(f"{url}/v1/predict", json={"queries": queries}).json()["predictions"]
    in_flight = events.slice(2_000, 2_000)
    sender = threading.Thread(target=lambda: _try_post(url, in_flight), daemon=True)
    sender.start()
    time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    sender.join(timeout=10)
    process, url = start(tmp_path / "model", state, port)
    try:
        with sqlite3.connect(state) as db:
            stored = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        assert stored in (acknowledged.height, acknowledged.height + in_flight.height)  # atomic
        after = httpx.post(f"{url}/v1/predict", json={"queries": queries}).json()["predictions"]
        expected = model.predict(events.head(stored), pl.DataFrame(queries))
        got = np.array([p["prediction"] for p in after])
        assert np.abs(got - expected["prediction"].to_numpy()).max() < 1e-5
        if stored == acknowledged.height:
            assert after == before
    finally:
        process.kill()
        process.wait(timeout=10)


def _try_post(url, frame) -> None:
    try:
        httpx.post(f"{url}/v1/events", json={"events": events_json(frame)}, timeout=30)
    except httpx.HTTPError:
        pass  # the server died under it: that is the point


def test_workers_share_one_state_file_and_answer_as_batch_predict(tmp_path, quick) -> None:
    data = generate(SynthConfig(users=150, items=60, events=4_000, seed=10))
    events = data.events.sort(["ts", "user", "item"])
    model = Forecaster("lstm", quick, seed=0, epochs=1).fit(events, None)
    model.save(tmp_path / "model")
    head, tail = events.head(3_000), events.tail(1_000)
    head.write_parquet(tmp_path / "head.parquet")
    process, url = start(tmp_path / "model", tmp_path / "state.db", free_port(),
                         "--workers", "2", "--history", str(tmp_path / "head.parquet"))
    try:
        users = tail["user"].unique().sort().to_list()

        def post(share: list[str]) -> None:  # each client its own users, in time order
            mine = tail.filter(pl.col("user").is_in(share))
            with httpx.Client(base_url=url, timeout=30) as client:
                for s in range(0, mine.height, 50):
                    batch = events_json(mine[s : s + 50])
                    reply = client.post("/v1/events", json={"events": batch})
                    assert reply.status_code == 200, reply.text

        clients = [threading.Thread(target=post, args=(users[k::4],)) for k in range(4)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(timeout=60)
        ts = int(events["ts"].max()) + 60
        items = data.items["item"].to_list()
        queries = pl.DataFrame({"user": users, "ts": ts,
                                "item": [items[(7 * k) % len(items)] for k in range(len(users))]})
        expected = model.predict(events, queries)["prediction"].to_numpy()
        for _ in range(4):  # answered by either worker
            got = httpx.post(f"{url}/v1/predict", json={"queries": queries.to_dicts()}).json()
            served = np.array([p["prediction"] for p in got["predictions"]])
            assert np.abs(served - expected).max() < 1e-5
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_workers_exit_when_their_parent_is_killed_and_the_port_is_free_again(tmp_path) -> None:
    data = generate(SynthConfig(users=40, items=20, events=600, seed=4))
    Forecaster("bias").fit(data.events, None).save(tmp_path / "model")
    port = free_port()
    process, url = start(tmp_path / "model", tmp_path / "s.db", port, "--workers", "2")
    process.send_signal(signal.SIGKILL)
    process.wait()
    for _ in range(100):  # the workers get SIGTERM from the kernel and shut down
        try:
            httpx.get(f"{url}/healthz", timeout=0.5)
        except httpx.HTTPError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("a worker still answers after its parent was killed")
    again, _ = start(tmp_path / "model", tmp_path / "s.db", port)  # no "address in use"
    again.terminate()
    again.wait()


def test_a_client_that_sends_its_headers_slowly_is_cut_off(tmp_path) -> None:
    data = generate(SynthConfig(users=40, items=20, events=600, seed=4))
    Forecaster("bias").fit(data.events, None).save(tmp_path / "model")
    port = free_port()
    process, url = start(tmp_path / "model", tmp_path / "s.db", port)
    try:
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\n")
        slow.settimeout(1.0)
        started, closed = time.monotonic(), False
        while time.monotonic() - started < 25 and not closed:
            try:
                slow.sendall(b"X-Slow: 1\r\n")  # a header line a second, never the end
                closed = slow.recv(64) == b""
            except TimeoutError:
                continue
            except OSError:
                closed = True
        assert closed and time.monotonic() - started < 15
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200  # others still served
    finally:
        process.terminate()
        process.wait()


def test_serve_says_where_it_listens_and_warns_when_writes_are_open(tmp_path) -> None:
    data = generate(SynthConfig(users=40, items=20, events=600, seed=4))
    Forecaster("bias").fit(data.events, None).save(tmp_path / "model")
    port, log = free_port(), tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if k != "STARCAST_TOKEN"}
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "starcast", "serve", "--model", str(tmp_path / "model"),
             "--state", str(tmp_path / "s.db"), "--port", str(port)],
            stdout=sink, stderr=sink, env=env)
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).is_success:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            text = log.read_text()
            assert f"listening on http://127.0.0.1:{port}" in text
            assert "warning: no token" in text
        finally:
            process.terminate()
            process.wait()
