"""The service through its real app on a real SQLite file."""

import asyncio
import re

import httpx
import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient

from starcast import Forecaster
from starcast.config import LSTMConfig, StarcastConfig
from starcast.data.splits import split_events
from starcast.data.synth import SynthConfig, generate
from starcast.errors import StarcastError
from starcast.serving.app import create_app
from starcast.serving.online import OnlineForecaster
from starcast.serving.store import Store


@pytest.fixture(scope="module")
def trained(request, quick):
    """A trained lstm, or the model a test names (no valid: every epoch runs, so the
    sequence state matters)."""
    data = generate(SynthConfig(users=120, items=50, events=3_000, seed=7))
    split = split_events(data.events, "time")
    known = pl.concat([split.train, split.valid])
    name = getattr(request, "param", "lstm")
    model = Forecaster(name, quick, seed=0, epochs=2).fit(known, None, data.items)
    assert model.model_.log_.best_epoch == 2
    return model, known, split.test


def client(model, path, token=None):
    return TestClient(create_app(OnlineForecaster(model, Store(path)), token, "test"))


def as_events(frame):
    return [dict(zip(("user", "item", "rating", "ts"), row, strict=True))
            for row in frame.select("user", "item", "rating", "ts").iter_rows()]


def later_queries(history, test):
    ts = int(history["ts"].max()) + 3600
    return test.select("user", "item").with_columns(pl.lit(ts).alias("ts")).unique(
        ["user", "item"], maintain_order=True
    ).head(200)


@pytest.mark.parametrize("trained", ["lstm", "transformer"], indirect=True)
def test_posted_history_predicts_as_batch_predict(trained, tmp_path) -> None:
    model, history, test = trained
    api = client(model, tmp_path / "s.db")
    ordered = history.sort(["ts", "user", "item"])
    for start in range(0, ordered.height, 500):
        reply = api.post("/v1/events", json={"events": as_events(ordered[start : start + 500])})
        assert reply.status_code == 200, reply.text
    queries = later_queries(history, test)
    served = api.post("/v1/predict", json={"queries": queries.to_dicts()}).json()["predictions"]
    assert_as_batch(served, model.predict(history, queries))


def assert_as_batch(served: list[dict], batch: pl.DataFrame) -> None:
    """Served answers equal batch predict's: point, cold flag, star probabilities, balanced."""
    got = np.array([p["prediction"] for p in served])
    assert np.abs(got - batch["prediction"].to_numpy()).max() < 1e-5
    assert [p["cold"] for p in served] == batch["cold"].to_list()
    stars = batch.select(f"p{k}" for k in range(1, 6)).to_numpy()
    assert np.abs(np.array([p["probabilities"] for p in served]) - stars).max() < 1e-5
    assert [p["balanced"] for p in served] == batch["balanced"].to_list()


@pytest.mark.parametrize("trained", ["lstm", "transformer"], indirect=True)
def test_state_init_from_history_predicts_as_batch_predict(trained, tmp_path) -> None:
    model, history, test = trained
    online = OnlineForecaster(model, Store(tmp_path / "s.db"))
    assert online.initialise(history) == history.height
    queries = later_queries(history, test)
    served = online.predict(queries)["prediction"].to_numpy()
    assert np.abs(served - model.predict(history, queries)["prediction"].to_numpy()).max() < 1e-5


def test_retries_are_idempotent_and_reused_ids_refused(trained, tmp_path) -> None:
    model, _, _ = trained
    api = client(model, tmp_path / "s.db")
    event = {"user": "u1", "item": "i1", "rating": 4.0, "ts": 100, "event_id": "e-1"}
    assert api.post("/v1/events", json={"events": [event]}).json() == {"applied": 1,
                                                                       "duplicates": 0}
    assert api.post("/v1/events", json={"events": [event]}).json() == {"applied": 0,
                                                                       "duplicates": 1}
    assert api.get("/v1/users/u1").json()["events"] == 1
    clash = event | {"rating": 1.0}
    assert api.post("/v1/events", json={"events": [clash]}).status_code == 409


@pytest.mark.parametrize("trained", ["lstm", "transformer"], indirect=True)
def test_an_older_event_is_refused_whole_and_rebuild_replays(trained, tmp_path) -> None:
    model, _, _ = trained
    api = client(model, tmp_path / "s.db")
    first = [{"user": "u", "item": "a", "rating": 5.0, "ts": 200}]
    assert api.post("/v1/events", json={"events": first}).status_code == 200
    late = [{"user": "v", "item": "a", "rating": 3.0, "ts": 300},
            {"user": "u", "item": "b", "rating": 2.0, "ts": 100}]
    reply = api.post("/v1/events", json={"events": late})
    assert reply.status_code == 409 and reply.json()["detail"]["index"] == 1
    assert api.get("/v1/users/v").json()["events"] == 0  # nothing of the request stored
    before = api.post("/v1/predict", json={"queries": [{"user": "u", "item": "c", "ts": 500}]})
    assert api.post("/v1/users/u/rebuild").json()["events"] == 1
    after = api.post("/v1/predict", json={"queries": [{"user": "u", "item": "c", "ts": 500}]})
    assert before.json() == after.json()


def test_write_endpoints_need_the_token_when_one_is_set(trained, tmp_path) -> None:
    model, _, _ = trained
    api = client(model, tmp_path / "s.db", token="sesame")
    body = {"events": [{"user": "u", "item": "a", "rating": 5.0, "ts": 1}]}
    assert api.post("/v1/events", json=body).status_code == 401
    assert api.post("/v1/events", json=body,
                    headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = api.post("/v1/events", json=body, headers={"Authorization": "Bearer sesame"})
    assert ok.status_code == 200
    assert api.post("/v1/users/u/rebuild").status_code == 401
    free = api.post("/v1/predict", json={"queries": [{"user": "u", "item": "a"}]})
    assert free.status_code == 200


def test_health_metrics_and_docs(trained, tmp_path) -> None:
    model, _, _ = trained
    api = client(model, tmp_path / "s.db")
    assert api.get("/healthz").json()["status"] == "ok"
    api.post("/v1/events", json={"events": [{"user": "u", "item": "a", "rating": 5.0, "ts": 1}]})
    text = api.get("/metrics").text
    assert "starcast_events_applied_total 1" in text
    assert 'starcast_requests_total{method="POST",path="/v1/events",status="200"} 1' in text
    assert "starcast_request_seconds_bucket" in text and 'version="test"' in text
    page = api.get("/docs")
    assert page.status_code == 200
    # every asset from this server (the page works offline), and each one there
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets and all(a.startswith("/docs-assets/") for a in assets), assets
    assert all(api.get(a).status_code == 200 for a in assets)


def test_concurrent_clients_for_different_users_do_not_mix(trained, tmp_path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    model, history, test = trained
    api = client(model, tmp_path / "s.db")
    ordered = history.sort(["ts", "user", "item"])
    users = ordered["user"].unique().sort().to_list()
    groups = [ordered.filter(pl.col("user").is_in(users[k::4])) for k in range(4)]

    def post(group):  # each client posts its own users' events, in order, in small batches
        return [api.post("/v1/events", json={"events": as_events(group[s : s + 20])}).status_code
                for s in range(0, group.height, 20)]

    with ThreadPoolExecutor(4) as pool:
        statuses = [code for codes in pool.map(post, groups) for code in codes]
    assert set(statuses) == {200}
    queries = later_queries(history, test)
    served = api.post("/v1/predict", json={"queries": queries.to_dicts()}).json()["predictions"]
    got = np.array([p["prediction"] for p in served])
    assert np.abs(got - model.predict(history, queries)["prediction"].to_numpy()).max() < 1e-5


def test_oversized_requests_get_413(trained, tmp_path) -> None:
    model, _, _ = trained
    api = client(model, tmp_path / "s.db")
    many = [{"user": "u", "item": "a"}] * 10_001
    assert api.post("/v1/predict", json={"queries": many}).status_code == 413
    huge = {"events": [{"user": "u" * 1000, "item": "a", "rating": 5.0, "ts": 1}] * 5000}
    reply = api.post("/v1/events", json=huge)
    assert reply.status_code == 413 and "limit" in reply.text
    assert api.get("/v1/users/u").json()["events"] == 0


@pytest.mark.parametrize("trained", ["lstm", "transformer"], indirect=True)
def test_rated_pairs_answer_as_batch_predict_which_hides_their_own_rating(trained, tmp_path):
    model, history, _ = trained
    api = client(model, tmp_path / "s.db")
    ordered = history.sort(["ts", "user", "item"])
    head, tail = ordered.head(ordered.height - 300), ordered.tail(300)
    OnlineForecaster(model, Store(tmp_path / "s.db")).initialise(head)
    assert api.post("/v1/events", json={"events": as_events(tail)}).status_code == 200
    ts = int(history["ts"].max()) + 3600
    rated = pl.concat([head.head(100), tail.head(100)]).select(
        "user", "item", pl.lit(ts).alias("ts"))  # rated in the initial history, then posted
    unrated = rated.with_columns(pl.col("item").shift(1, fill_value="new-item"))
    past = rated.head(20).with_columns(pl.lit(int(head["ts"].min())).alias("ts"))
    queries = pl.concat([rated, unrated, past])  # one request: current, unrated, in the past
    served = api.post("/v1/predict", json={"queries": queries.to_dicts()}).json()["predictions"]
    assert_as_batch(served, model.predict(history, queries))
    # a current rated pair is answered from the states replayed without it, not in batch
    online = OnlineForecaster(model, Store(tmp_path / "s.db"))
    online._batch = lambda queries: pytest.fail(f"batch path for {queries.height} queries")
    one = online.predict(rated.tail(1))
    assert one["prediction"][0] == pytest.approx(served[len(rated) - 1]["prediction"], abs=1e-5)


def test_a_state_file_from_an_earlier_layout_is_refused_by_name(tmp_path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE users (user TEXT PRIMARY KEY, n INTEGER NOT NULL, last_ts "
                   "INTEGER, last_item TEXT, resid_sum REAL NOT NULL, h BLOB, c BLOB)")
    with pytest.raises(StarcastError, match="old.db: a state file from an earlier starcast"):
        Store(path)


@pytest.mark.parametrize("n", [7, 150])  # answers written by `json`, and by Polars
def test_ordinal_probabilities_are_served_as_batch_predict_gives_them(tmp_path, n) -> None:
    data = generate(SynthConfig(users=120, items=50, events=3_000, seed=5))
    config = StarcastConfig(lstm=LSTMConfig(head="ordinal"))
    model = Forecaster(config=config, seed=0, epochs=1).fit(data.events, None)
    api = client(model, tmp_path / "s.db")
    OnlineForecaster(model, Store(tmp_path / "s.db")).initialise(data.events)
    queries = later_queries(data.events, data.events.tail(400)).head(n)
    assert queries.height == n
    got = api.post("/v1/predict", json={"queries": queries.to_dicts()}).json()["predictions"]
    batch = model.predict(data.events, queries)
    assert [p["user"] for p in got] == batch["user"].to_list()
    assert [p["cold"] for p in got] == batch["cold"].to_list()
    served = np.array([p["probabilities"] for p in got])
    expected = batch.select(f"p{k}" for k in range(1, 6)).to_numpy()
    assert served.shape == (len(queries), 5)
    assert np.abs(served - expected).max() < 1e-5
    assert np.abs(np.array([p["prediction"] for p in got]) - batch["prediction"]).max() < 1e-5


def test_concurrent_predicts_share_calls_and_each_gets_its_own_answer(trained, tmp_path) -> None:
    model, history, test = trained
    online = OnlineForecaster(model, Store(tmp_path / "s.db"))
    online.initialise(history)
    calls, answer = [], online.answer
    online.answer = lambda users, *rest: calls.append(len(users)) or answer(users, *rest)
    app = create_app(online, None, "test")
    queries = later_queries(history, test).head(20)

    async def concurrently():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://starcast") as api:
            return await asyncio.gather(*(api.post("/v1/predict", json={"queries": [q]})
                                          for q in queries.to_dicts()))

    replies = asyncio.run(concurrently())
    got = np.array([r.json()["predictions"][0]["prediction"] for r in replies])
    assert [r.json()["predictions"][0]["user"] for r in replies] == queries["user"].to_list()
    assert np.abs(got - model.predict(history, queries)["prediction"].to_numpy()).max() < 1e-5
    assert sum(calls) == 20 and len(calls) < 20, calls  # some requests were answered together


def test_a_state_file_locked_too_long_gets_503_and_nothing_stored(trained, tmp_path) -> None:
    import sqlite3

    model, history, _ = trained
    path = tmp_path / "s.db"
    api = TestClient(create_app(OnlineForecaster(model, Store(path, busy_seconds=0.2)), None,
                                "test"))
    event = {"user": "u", "item": "a", "rating": 4.0, "ts": 1, "event_id": "e1"}
    other = sqlite3.connect(path, isolation_level=None)  # another worker, mid-transaction
    other.execute("BEGIN IMMEDIATE")
    reply = api.post("/v1/events", json={"events": [event]})
    assert reply.status_code == 503 and reply.headers["retry-after"] == "1"
    assert "busy" in reply.json()["detail"]
    other.execute("ROLLBACK")
    assert other.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 0
    assert api.post("/v1/events", json={"events": [event]}).json()["applied"] == 1  # the retry


def test_models_without_recurrent_state_answer_the_batch_way(tmp_path) -> None:
    data = generate(SynthConfig(users=60, items=20, events=800, seed=3))
    model = Forecaster("bias").fit(data.events)
    online = OnlineForecaster(model, Store(tmp_path / "s.db"))
    online.initialise(data.events)
    queries = data.events.select("user", "item", "ts").tail(30)
    assert online.predict(queries).equals(model.predict(data.events, queries))


def test_fm_blend_groups_are_served_as_batch_predict(trained, tmp_path) -> None:
    """Users the FM was and was not fitted on, with and without reviews new to it, served
    equal to batch predict."""
    model, history, test = trained
    blend = model.model_.blend_
    saved = blend.weights.copy()
    blend.weights = np.array([0.3, 0.8])
    try:
        newer = test.head(test.height // 2)
        full = pl.concat([history, newer])
        online = OnlineForecaster(model, Store(tmp_path / "s.db"))
        online.initialise(full)
        queries = later_queries(full, test)
        visible = full.group_by("user").len()
        counts = queries.join(visible, on="user", how="left")["len"].fill_null(0).to_numpy()
        weights = set(blend.weight(queries["user"], counts).tolist())
        assert weights == {0.0, 0.3, 0.8}, weights
        served = online.predict(queries)["prediction"].to_numpy()
        batch = model.predict(full, queries)["prediction"].to_numpy()
        assert np.abs(served - batch).max() < 1e-5
    finally:
        blend.weights = saved
