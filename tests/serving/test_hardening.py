"""The service safe to expose: every bad request a 4xx naming the field, nothing stored, no
500; bodies bounded however they arrive; mistakes removable; files checked at start."""

import json
import os
import sqlite3
import time

import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from starcast import Forecaster
from starcast.data.schema import dedupe_events
from starcast.data.synth import SynthConfig, generate
from starcast.errors import ModelFormatError, StarcastError
from starcast.serving.app import MAX_BODY_BYTES, app_from_files, create_app
from starcast.serving.online import OnlineForecaster
from starcast.serving.store import Store

JSON = {"content-type": "application/json"}
QUIET = [HealthCheck.function_scoped_fixture]


@pytest.fixture(scope="module")
def model(quick):
    data = generate(SynthConfig(users=60, items=30, events=1_200, seed=8))
    return Forecaster("lstm", quick, seed=0, epochs=1).fit(data.events, None)


@pytest.fixture()
def api(model, tmp_path):
    client = TestClient(create_app(OnlineForecaster(model, Store(tmp_path / "s.db")), "tok",
                                   "test"), raise_server_exceptions=False)
    client.headers["Authorization"] = "Bearer tok"
    return client, tmp_path / "s.db"


def snapshot(path):
    with sqlite3.connect(path) as db:
        return [db.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
                for t in ("events", "users", "items")]


def event(**change):
    return {"user": "u1", "item": "i1", "rating": 4.0, "ts": 1_000} | change


BAD_BODIES = [
    ("/v1/events", json.dumps({"events": [event(item="a\x1fb")]}), "item"),
    *[(path, body.replace("TS", ts), "ts")
      for path, body in [("/v1/events", '{"events": [{"user": "u", "item": "a", "rating": 4, '
                                        '"ts": TS}]}'),
                         ("/v1/predict", '{"queries": [{"user": "u", "item": "a", "ts": TS}]}')]
      for ts in ("NaN", "Infinity", "-Infinity", "1e309", str(2**63), str(-(2**63) - 1))],
    ("/v1/predict", b'{"queries": [{"user": "\xff\xfe", "item": "a"}]}', "body"),
    ("/v1/predict", '{"queries": []}', "queries"),
    ("/v1/events", '{"events": []}', "events"),
    ("/v1/predict", '{"queries": [{"user": "u", "item": "a"}]}'.encode("utf-16"), "body"),
]


@pytest.mark.parametrize(("path", "body", "field"), BAD_BODIES)
def test_what_used_to_be_a_500_is_a_422_naming_the_field(api, path, body, field) -> None:
    client, db = api
    before = snapshot(db)
    reply = client.post(path, content=body, headers=JSON)
    assert reply.status_code == 422, reply.text
    assert field in json.dumps(reply.json()["detail"])
    assert snapshot(db) == before


def test_a_non_ascii_authorization_header_is_a_401(api) -> None:
    client, db = api
    reply = client.post("/v1/events", content=json.dumps({"events": [event()]}),
                        headers=JSON | {"Authorization": "Bearer \xe9".encode("latin-1")})
    assert reply.status_code == 401
    assert snapshot(db)[0] == []


def test_a_chunked_body_over_the_limit_is_413_whatever_the_headers_say(api) -> None:
    client, _ = api
    chunk = b" " * (1024 * 1024)
    body = (chunk for _ in range(MAX_BODY_BYTES // len(chunk) + 2))  # no content-length
    reply = client.post("/v1/predict", content=body, headers=JSON)
    assert reply.status_code == 413


def test_a_422_does_not_echo_a_large_body(api) -> None:
    client, _ = api
    reply = client.post("/v1/predict", content=b"[" * 3_000_000, headers=JSON)
    assert reply.status_code == 422
    assert len(reply.content) < 2_000


def test_writes_take_json_only_and_the_bearer_scheme_is_documented(api) -> None:
    client, db = api
    reply = client.post("/v1/events", content=json.dumps({"events": [event()]}),
                        headers={"content-type": "text/plain"})
    assert reply.status_code == 415
    assert snapshot(db)[0] == []
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_a_far_future_event_is_refused_and_a_stored_mistake_can_be_deleted(api) -> None:
    client, db = api
    later = int(time.time()) + 2 * 86_400
    reply = client.post("/v1/events", json={"events": [event(ts=later)]})
    assert reply.status_code == 422 and "ahead of the server's clock" in reply.text
    assert snapshot(db)[0] == []
    good = [event(event_id="a", ts=1_000), event(event_id="b", item="i2", ts=2_000)]
    assert client.post("/v1/events", json={"events": good}).status_code == 200
    before_b = snapshot(db)
    assert client.post("/v1/events", json={"events": [event(event_id="c", item="i3",
                                                            ts=3_000)]}).status_code == 200
    assert client.delete("/v1/events/nope").status_code == 404
    del client.headers["Authorization"]
    assert client.delete("/v1/events/c").status_code == 401
    client.headers["Authorization"] = "Bearer tok"
    assert client.delete("/v1/events/c").json()["deleted"] == "c"
    users, items = snapshot(db)[1:]
    assert users == before_b[1] and [i for i in items if i[0] != "i3"] == before_b[2]
    assert client.post("/v1/users/nobody/rebuild").status_code == 404


def test_a_re_rating_replaces_the_earlier_one_as_batch_predict_does(model, api) -> None:
    client, _ = api
    events = [event(ts=1_000, rating=1.0), event(item="i2", ts=1_500),
              event(ts=2_000, rating=5.0), event(user="u2", ts=2_100, rating=2.0)]
    for e in events:  # one at a time, as they arrive
        assert client.post("/v1/events", json={"events": [e]}).status_code == 200
    queries = pl.DataFrame({"user": ["u1", "u2", "u1"], "item": ["i3", "i3", "i4"],
                            "ts": [3_000, 3_000, 3_000]})
    served = client.post("/v1/predict", json={"queries": queries.to_dicts()}).json()
    history, removed = dedupe_events(pl.DataFrame(events).with_columns(pl.col("ts").cast(
        pl.Int64)))
    assert removed == 1
    batch = model.predict(history, queries)["prediction"].to_numpy()
    got = np.array([p["prediction"] for p in served["predictions"]])
    assert np.abs(got - batch).max() < 1e-5
    assert client.get("/v1/users/u1").json()["events"] == 2


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes a read-only file anyway")
def test_a_read_only_state_file_is_refused_at_start(model, tmp_path) -> None:
    path = tmp_path / "s.db"
    Store(path)
    path.chmod(0o444)
    try:
        with pytest.raises(StarcastError, match="read-only"):
            Store(path)
    finally:
        path.chmod(0o644)


@pytest.mark.parametrize("content", [b"not a database at all\n" * 10, b""])
def test_a_file_that_is_no_state_file_is_refused_by_name(tmp_path, content) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    if content:
        with pytest.raises(StarcastError, match="notes.txt: not a starcast state file"):
            Store(path)
    with pytest.raises(StarcastError, match="no such directory"):
        Store(tmp_path / "missing" / "s.db")


def test_a_state_file_of_another_model_is_refused(model, tmp_path) -> None:
    first, second = tmp_path / "m1", tmp_path / "m2"
    model.save(first)
    Forecaster("bias").fit(generate(SynthConfig(users=30, items=20, events=400)).events
                           ).save(second)
    app_from_files(first, tmp_path / "s.db")
    with pytest.raises(StarcastError, match="states of model lstm-"):
        app_from_files(second, tmp_path / "s.db")


@pytest.mark.parametrize("damage", ["truncate", "shape", "missing"])
def test_damaged_weights_are_a_model_format_error_naming_the_file(model, tmp_path, damage):
    from safetensors.torch import load_file, save_file

    out = model.save(tmp_path / "m")
    weights = out / "model.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:1000])
    else:
        tensors = load_file(str(weights))
        name = "net.mlp.1.weight"
        if damage == "shape":
            tensors[name] = tensors[name][:, :3].contiguous()
        else:
            del tensors[name]
        save_file(tensors, str(weights))
    with pytest.raises(ModelFormatError, match="model.safetensors"):
        Forecaster.load(out)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["user", "item", "rating", "ts", "event_id", "events", "queries", "x"]),
        inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=QUIET, derandomize=True)
@given(body=st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"events": st.lists(st.dictionaries(
        st.sampled_from(["user", "item", "rating", "ts", "event_id"]), json_values,
        min_size=3, max_size=5), min_size=1, max_size=3)}).map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=64),
))
def test_no_body_gets_a_500_or_stores_a_bad_event(api, body) -> None:
    client, db = api
    before = snapshot(db)
    for path in ("/v1/events", "/v1/predict"):
        reply = client.post(path, content=body, headers=JSON)
        assert reply.status_code < 500, (path, body, reply.text)
        if reply.status_code >= 400:
            assert "detail" in reply.json()
    if snapshot(db) != before:  # only a fully valid batch may be stored
        events = json.loads(body)["events"]
        assert all(isinstance(e.get("user"), str) and isinstance(e.get("ts"), int)
                   for e in events)


def test_a_body_that_does_not_arrive_in_time_gets_408(model, tmp_path, monkeypatch) -> None:
    import asyncio

    from starcast.serving import app as service

    monkeypatch.setattr(service, "BODY_SECONDS", 0.2)
    application = create_app(OnlineForecaster(model, Store(tmp_path / "s.db")), None, "t")
    sent = []

    async def receive():  # the first bytes, then nothing more for ever
        if not sent:
            sent.append("first")
            return {"type": "http.request", "body": b'{"queries"', "more_body": True}
        await asyncio.sleep(3600)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/predict", "raw_path": b"/v1/predict",
             "query_string": b"", "headers": [(b"content-type", b"application/json")],
             "http_version": "1.1", "scheme": "http", "server": ("t", 80), "client": ("c", 1),
             "root_path": ""}
    asyncio.run(asyncio.wait_for(application(scope, receive, send), 10))
    starts = [m for m in sent if isinstance(m, dict) and m["type"] == "http.response.start"]
    assert starts and starts[0]["status"] == 408


def test_bound_to_loopback_a_foreign_host_name_is_refused(model, tmp_path) -> None:
    application = create_app(OnlineForecaster(model, Store(tmp_path / "s.db")), None, "t",
                             allowed_hosts=("localhost", "127.0.0.1"))
    client = TestClient(application, base_url="http://127.0.0.1")
    body = {"events": [event()]}
    assert client.post("/v1/events", json=body).status_code == 200
    rebound = client.post("/v1/events", json=body | {"events": [event(ts=2_000)]},
                          headers={"Host": "evil.example"})
    assert rebound.status_code == 400
    assert client.get("/v1/users/u1").json()["events"] == 1
