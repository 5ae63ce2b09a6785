"""The HTTP layer: FastAPI over OnlineForecaster, nothing the library cannot do itself."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import secrets
import time
from pathlib import Path
from typing import Annotated, NotRequired, TypeVar

import numpy as np
import polars as pl
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import ConfigDict, StringConstraints, TypeAdapter, ValidationError, with_config
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from typing_extensions import TypedDict

from starcast.forecaster import WEIGHTS, Forecaster
from starcast.serving.batcher import Batcher
from starcast.serving.metrics import Metrics
from starcast.serving.online import Answers, Event, EventRejected, OnlineForecaster
from starcast.serving.store import Store, StoreBusy

MAX_QUERIES = 10_000
MAX_EVENTS = 10_000
MAX_BODY_BYTES = 4 * 1024 * 1024
FEW_ANSWERS = 100  # up to this many, answers are serialised by `json` (see `_answers`)
SHARED_QUERIES = 100  # requests up to this size share answer calls (see `Batcher`)


# Request bodies are TypedDicts, not models: validated in one pydantic-core pass straight into
# dicts, a 10,000-query body costs about two thirds of the time and far fewer objects to collect.
STRICT = ConfigDict(strict=True, extra="forbid")
Text = Annotated[str, StringConstraints(min_length=1)]


@with_config(STRICT)
class Query(TypedDict):
    user: Text
    item: Text
    ts: NotRequired[int | None]  # default: now


@with_config(STRICT)
class PredictRequest(TypedDict):
    queries: list[Query]


@with_config(STRICT)
class EventIn(TypedDict):
    user: Text
    item: Text
    rating: float
    ts: int
    event_id: NotRequired[Text | None]


@with_config(STRICT)
class EventsRequest(TypedDict):
    events: list[EventIn]


PREDICT, EVENTS = TypeAdapter(PredictRequest), TypeAdapter(EventsRequest)
Body = TypeVar("Body")


def create_app(
    online: OnlineForecaster, token: str | None = None, model_version: str = "unknown"
) -> FastAPI:
    """The endpoints run on the event loop, one at a time: each is a millisecond or so of CPU
    (measured faster than a thread pool on 2 cores), writes are serialised anyway, and small
    predict requests that arrive together are answered together."""
    app = FastAPI(title="starcast", version="1", summary="Star ratings from review histories")
    metrics = Metrics(model_version)
    batcher = Batcher(online)
    scale = online.forecaster.scale

    async def authorised(authorization: Annotated[str | None, Header()] = None) -> None:
        if token is not None and not secrets.compare_digest(
            authorization or "", f"Bearer {token}"
        ):
            raise HTTPException(401, "write endpoints need 'Authorization: Bearer <token>'")

    app.add_middleware(_Guard, metrics=metrics)

    @app.exception_handler(StoreBusy)
    async def busy(request: Request, err: StoreBusy) -> JSONResponse:
        """Nothing was written: the client may retry (with its event_ids, safely)."""
        return JSONResponse({"detail": f"state store busy, retry: {err}"}, status_code=503,
                            headers={"Retry-After": "1"})

    @app.post("/v1/predict", response_class=Response, openapi_extra=_body_schema(PREDICT))
    async def predict(request: Request) -> Response:
        """Per query: prediction (the expected star), cold, and for a model with star
        probabilities (every model trained by this version) those and the balanced star."""
        queries = (await _parsed(PREDICT, request))["queries"]
        _bounded(len(queries), MAX_QUERIES, "queries")
        now = int(time.time())
        users, items = [q["user"] for q in queries], [q["item"] for q in queries]
        ts = np.array([now if q.get("ts") is None else q["ts"] for q in queries], dtype=np.int64)
        if len(users) <= SHARED_QUERIES:  # (a large request gains nothing from company)
            return _answers(users, items, ts, await batcher.answer(users, items, ts))
        return _answers(users, items, ts, online.answer(users, items, ts))

    @app.post("/v1/events", dependencies=[Depends(authorised)],
              openapi_extra=_body_schema(EVENTS))
    async def events(request: Request) -> dict:
        """Store the events and advance their users' and items' states, in one transaction."""
        events = (await _parsed(EVENTS, request))["events"]
        _bounded(len(events), MAX_EVENTS, "events")
        for k, e in enumerate(events):
            if not scale.contains(e["rating"]):
                raise HTTPException(422, [{"loc": ["body", "events", k, "rating"],
                                           "msg": f"rating {e['rating']} is outside "
                                                  f"[{scale.low}, {scale.high}]"}])
        try:
            applied = online.apply([Event(**e) for e in events])
        except EventRejected as err:
            raise HTTPException(409, {"index": err.index, "reason": err.reason}) from None
        metrics.add_events(applied["applied"])
        return applied

    @app.get("/v1/users/{user}")
    async def user(user: str) -> dict:
        return online.user(user)

    @app.post("/v1/users/{user}/rebuild", dependencies=[Depends(authorised)])
    async def rebuild(user: str) -> dict:
        """Replay the user's stored events in time order (after a backfill, say)."""
        return online.rebuild(user)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok", "model": online.forecaster.config.model}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> str:
        return metrics.render()

    return app


class _Guard:
    """The body-size limit and the request metrics, as plain ASGI: Starlette's
    `BaseHTTPMiddleware` costs a task and a stream per request, a large share of a 1-query
    predict."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        size = int(Headers(scope=scope).get("content-length") or 0)
        if size > MAX_BODY_BYTES:
            await JSONResponse({"detail": f"body of {size} bytes is over the limit of "
                                f"{MAX_BODY_BYTES}"}, status_code=413)(scope, receive, sending)
        else:
            await self.app(scope, receive, sending)
        route = scope.get("route")  # set by the router, on this same scope
        path = route.path if route is not None else "unmatched"
        self.metrics.observe(scope["method"], path, status, time.perf_counter() - started)


async def _parsed(body: TypeAdapter[Body], request: Request) -> Body:
    """The request body, parsed and validated in one pass by pydantic-core (for a 10,000-query
    body, about a third of the time of FastAPI's `json.loads` then validate). Errors are
    FastAPI's own 422, each located under `body`."""
    try:
        return body.validate_json(await request.body())
    except ValidationError as err:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in err.errors(include_url=False)]
        ) from None


def _body_schema(body: TypeAdapter) -> dict:
    """The OpenAPI request body of an endpoint that parses its own (see `_parsed`)."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": body.json_schema()}}}}


def _bounded(count: int, limit: int, field: str) -> None:
    if count > limit:
        raise HTTPException(413, f"{count} {field} in one request; at most {limit}")


def _answers(users: list[str], items: list[str], ts: np.ndarray, answers: Answers) -> Response:
    """{"predictions": [{user, item, ts, prediction, cold, balanced?, probabilities?}, ...]}.

    Few answers are written by `json`, many by Polars: per answer Polars is about 8x faster,
    but building its frame costs about 0.4 ms, a third of a 1-query request.
    """
    columns = {"user": users, "item": items, "ts": ts, "prediction": answers.prediction,
               "cold": answers.cold}
    if answers.balanced is not None:
        columns["balanced"] = answers.balanced
    if answers.probabilities is not None:
        columns["probabilities"] = answers.probabilities
    if len(users) <= FEW_ANSWERS:
        values = [v if isinstance(v, list) else v.tolist() for v in columns.values()]
        rows = json.dumps([dict(zip(columns, row, strict=True))
                           for row in zip(*values, strict=True)])
    else:
        rows = pl.DataFrame(columns, schema_overrides={"user": pl.Utf8, "item": pl.Utf8}
                            ).write_json()
    return Response(f'{{"predictions":{rows}}}', media_type="application/json")


def app_from_files(
    model_dir: str | Path, state: str | Path, history: pl.DataFrame | None = None,
    token: str | None = None,
) -> FastAPI:
    """Load the model, open (or create) the state store, compute states from `history`."""
    forecaster = Forecaster.load(model_dir)
    online = OnlineForecaster(forecaster, Store(state))
    if history is not None:
        online.initialise(history)
    weights = (Path(model_dir) / WEIGHTS).read_bytes()
    version = f"{forecaster.config.model}-{hashlib.sha256(weights).hexdigest()[:12]}"
    app = create_app(online, token, version)
    # the model, vocabularies and app live as long as the process: out of the collector's
    # sight, a full collection during a 10,000-query request no longer walks them (measured:
    # that request from about 210-290 ms to about 120 ms in process)
    gc.collect()
    gc.freeze()
    return app


def app_from_environment() -> FastAPI:
    """One worker process's app under `starcast serve --workers N` (uvicorn starts the workers
    and calls this): the model and the state file are named by the environment the parent set.
    Writers in different workers take turns through SQLite's own lock."""
    import torch

    torch.set_num_threads(1)  # one core per worker
    return app_from_files(os.environ["STARCAST_MODEL"], os.environ["STARCAST_STATE"],
                          token=os.environ.get("STARCAST_TOKEN"))
