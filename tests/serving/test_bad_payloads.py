"""Bad input gets 422 or 413 naming the field, and never changes the stored state."""

import sqlite3

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from starcast import Forecaster
from starcast.data.synth import SynthConfig, generate
from starcast.serving.app import create_app
from starcast.serving.online import OnlineForecaster
from starcast.serving.store import Store

VALID = {"user": "u1", "item": "i1", "rating": 4.0, "ts": 1_000, "event_id": "e1"}
NOT_TEXT = st.one_of(st.none(), st.booleans(), st.integers(),
                     st.floats(allow_nan=False, allow_infinity=False),
                     st.lists(st.text(), max_size=2), st.just(""))
NOT_INT = st.one_of(st.none(), st.booleans(), st.text(max_size=5),
                    st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: x != int(x)))
NOT_RATING = st.one_of(st.none(), st.booleans(), st.text(max_size=5),
                       st.floats(allow_nan=False, allow_infinity=False).filter(
                           lambda x: not 1 <= x <= 5))
BROKEN = {"user": NOT_TEXT, "item": NOT_TEXT, "rating": NOT_RATING, "ts": NOT_INT,
          "event_id": NOT_TEXT.filter(lambda v: v is not None)}


@st.composite
def bad_event(draw):
    field = draw(st.sampled_from(sorted(BROKEN) + ["missing", "extra"]))
    event = dict(VALID)
    if field == "missing":
        del event[draw(st.sampled_from(["user", "item", "rating", "ts"]))]
    elif field == "extra":
        event[draw(st.sampled_from(["score", "time", "userid"]))] = 1
    else:
        event[field] = draw(BROKEN[field])
    return event


@pytest.fixture(scope="module")
def service(tmp_path_factory, quick):
    data = generate(SynthConfig(users=60, items=30, events=1_200, seed=8))
    model = Forecaster("lstm", quick, seed=0, epochs=1).fit(data.events, None)
    path = tmp_path_factory.mktemp("bad") / "s.db"
    api = TestClient(create_app(OnlineForecaster(model, Store(path)), None, "test"))
    good = {"user": "u0", "item": "i0", "rating": 3.0, "ts": 10}
    assert api.post("/v1/events", json={"events": [good]}).status_code == 200
    return api, path


def snapshot(path):
    with sqlite3.connect(path) as db:
        return [db.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
                for t in ("events", "users", "items")]


QUIET = [HealthCheck.function_scoped_fixture]  # the service fixture is shared on purpose


@settings(max_examples=60, deadline=None, suppress_health_check=QUIET, derandomize=True)
@given(events=st.lists(bad_event(), min_size=1, max_size=3), position=st.integers(0, 3))
def test_bad_events_are_refused_and_change_nothing(service, events, position) -> None:
    api, path = service
    before = snapshot(path)
    batch = [{"user": "u9", "item": "i9", "rating": 5.0, "ts": 50}]  # a good one beside them
    batch[min(position, 1):min(position, 1)] = events
    reply = api.post("/v1/events", json={"events": batch})
    assert reply.status_code == 422, reply.text
    assert "events" in reply.text  # the location names the field
    assert snapshot(path) == before


@settings(max_examples=30, deadline=None, suppress_health_check=QUIET, derandomize=True)
@given(body=st.one_of(
    st.none(), st.integers(), st.text(max_size=10),
    st.fixed_dictionaries({"events": st.one_of(st.none(), st.integers(), st.text(max_size=5))}),
    st.fixed_dictionaries({"queries": st.lists(st.integers(), min_size=1, max_size=2)}),
))
def test_malformed_bodies_change_nothing(service, body) -> None:
    api, path = service
    before = snapshot(path)
    # (json=None sends no body and no content type: a write refuses it as not JSON)
    assert api.post("/v1/events", json=body).status_code == (415 if body is None else 422)
    assert api.post("/v1/predict", json=body).status_code == 422
    assert snapshot(path) == before
