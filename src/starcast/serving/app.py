"""The HTTP layer: FastAPI over OnlineForecaster, nothing the library cannot do itself."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import json
import os
import secrets
import signal
import threading
import time
from pathlib import Path
from typing import Annotated, NotRequired, TypeVar

import numpy as np
import polars as pl
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import (
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    with_config,
)
from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from typing_extensions import TypedDict

from starcast.features.history import TS_BITS
from starcast.forecaster import Forecaster, model_version
from starcast.serving.batcher import Batcher
from starcast.serving.metrics import Metrics
from starcast.serving.online import (
    FUTURE_TOLERANCE,
    Answers,
    Event,
    EventInvalid,
    EventRejected,
    OnlineForecaster,
    UnknownEvent,
)
from starcast.serving.store import Store, StoreBusy

MAX_QUERIES = 10_000
MAX_EVENTS = 10_000
MAX_BODY_BYTES = 4 * 1024 * 1024
FEW_ANSWERS = 100  # up to this many, answers are serialised by `json` (see `_answers`)
SHARED_QUERIES = 100  # requests up to this size share answer calls (see `Batcher`)


# Request bodies are TypedDicts, not models: validated in one pydantic-core pass straight into
# dicts, a 10,000-query body costs about two thirds of the time and far fewer objects to collect.
STRICT = ConfigDict(strict=True, extra="forbid")
# \x1f separates a user's rated items in the state store (store.SEP): refused in ids
Text = Annotated[str, StringConstraints(min_length=1, pattern="^[^\x1f]*$")]
# unix seconds the library can order (features.history.TS_BITS): 1970 to the year 2514
Seconds = Annotated[int, Field(ge=0, lt=2**TS_BITS)]
BODY_SECONDS = 30.0  # a request body must arrive within this (a slow client holds a slot)
BEARER = HTTPBearer(auto_error=False, description="the token given to `starcast serve` "
                    "(--token-file or STARCAST_TOKEN); needed by every write endpoint")
MAX_ECHO = 120  # characters of a bad input value an error repeats back
MAX_ERRORS = 20  # errors listed per 422 (the count says how many there were)


@with_config(STRICT)
class Query(TypedDict):
    user: Text
    item: Text
    ts: NotRequired[Seconds | None]  # default: now


@with_config(STRICT)
class PredictRequest(TypedDict):
    queries: Annotated[list[Query], Field(min_length=1)]


@with_config(STRICT)
class EventIn(TypedDict):
    user: Text
    item: Text
    rating: float
    ts: Seconds
    event_id: NotRequired[Text | None]


@with_config(STRICT)
class EventsRequest(TypedDict):
    events: Annotated[list[EventIn], Field(min_length=1)]


PREDICT, EVENTS = TypeAdapter(PredictRequest), TypeAdapter(EventsRequest)
Body = TypeVar("Body")


LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")


def create_app(
    online: OnlineForecaster, token: str | None = None, model_version: str = "unknown",
    allowed_hosts: tuple[str, ...] | None = None,
) -> FastAPI:
    """The endpoints run on the event loop, one at a time: each is a millisecond or so of CPU
    (measured faster than a thread pool on 2 cores), writes are serialised anyway, and small
    predict requests that arrive together are answered together."""
    app = FastAPI(title="starcast", version="1", summary="Star ratings from review histories",
                  docs_url=None, redoc_url=None)
    _offline_docs(app)
    metrics = Metrics(model_version)
    batcher = Batcher(online)
    scale = online.forecaster.scale

    async def authorised(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    ) -> None:
        # (as bytes: a header may hold any latin-1 character, compare_digest takes ASCII str)
        given = b"" if credentials is None else credentials.credentials.encode("latin-1",
                                                                                "replace")
        if token is not None and not secrets.compare_digest(given, token.encode()):
            raise HTTPException(401, "write endpoints need 'Authorization: Bearer <token>'")

    async def json_body(content_type: Annotated[str | None, Header()] = None) -> None:
        """Writes take JSON only: a browser page cannot send it cross-site without asking
        (a form or a text/plain post it can)."""
        if (content_type or "").split(";")[0].strip().lower() != "application/json":
            raise HTTPException(415, "write endpoints take 'Content-Type: application/json'")

    if allowed_hosts is not None:  # (a page on another site that rebinds its name to this
        # address sends its own name as Host: refused, so it cannot post as a local client)
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    app.add_middleware(_Guard, metrics=metrics)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        """422 naming each bad field; what it echoes of the input is capped (a 4 MiB body of
        bad JSON gets a short answer) and always valid JSON (NaN, bytes and huge numbers
        included)."""
        errors = list(err.errors())
        shown = [_echo(e) for e in errors[:MAX_ERRORS]]
        body = {"detail": shown} | ({"errors": len(errors)} if len(errors) > MAX_ERRORS else {})
        return JSONResponse(body, status_code=422)

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

    @app.post("/v1/events", dependencies=[Depends(authorised), Depends(json_body)],
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
        except EventInvalid as err:
            raise HTTPException(422, [{"loc": ["body", "events", err.index, "ts"],
                                       "msg": err.reason}]) from None
        except EventRejected as err:
            raise HTTPException(409, {"index": err.index, "reason": err.reason}) from None
        metrics.add_events(applied["applied"])
        return applied

    @app.delete("/v1/events/{event_id}", dependencies=[Depends(authorised)])
    async def delete_event(event_id: str) -> dict:
        """Remove a stored event by its event_id (a mistake) and replay its user and item."""
        try:
            return online.delete(event_id)
        except UnknownEvent as err:
            raise HTTPException(404, str(err)) from None

    @app.get("/v1/users/{user}")
    async def user(user: str) -> dict:
        return online.user(user)

    @app.post("/v1/users/{user}/rebuild", dependencies=[Depends(authorised)])
    async def rebuild(user: str) -> dict:
        """Replay the user's stored events in time order (after a backfill, say)."""
        if online.user(user)["events"] == 0:
            raise HTTPException(404, f"no stored events of user {user!r}")
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

        declared = Headers(scope=scope).get("content-length") or "0"
        size = int(declared) if declared.isdigit() else MAX_BODY_BYTES + 1
        received, complete, deadline = 0, False, time.monotonic() + BODY_SECONDS

        async def receiving() -> Message:
            # counted as the body streams: a chunked body declares no length at all
            nonlocal received, complete
            if complete:  # (then only a disconnect can come, whenever it does)
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), deadline - time.monotonic())
            except TimeoutError:
                raise HTTPException(408, f"the body did not arrive within {BODY_SECONDS:g} s"
                                    ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if received > MAX_BODY_BYTES:
                    raise HTTPException(413, _too_large(received))
            return message

        if size > MAX_BODY_BYTES:
            await JSONResponse({"detail": _too_large(size)}, status_code=413)(
                scope, receive, sending)
        else:
            await self.app(scope, receiving, sending)
        route = scope.get("route")  # set by the router, on this same scope
        path = route.path if route is not None else "unmatched"
        self.metrics.observe(scope["method"], path, status, time.perf_counter() - started)


def _too_large(size: int) -> str:
    return f"body of {size} bytes or more is over the limit of {MAX_BODY_BYTES}"


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


def _offline_docs(app: FastAPI) -> None:
    """/docs with Swagger UI's files served from the installed package, not a CDN: the page
    works on a machine without internet access."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url, title="starcast API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png")


def _echo(error: dict) -> dict:
    """A validation error as JSON: location, message, and the bad input when it is short."""
    out = {"loc": list(error.get("loc", ())), "msg": str(error.get("msg", "")),
           "type": str(error.get("type", ""))}
    if "input" in error:
        value = error["input"]
        try:
            text = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):  # bytes, NaN, infinities
            text = None
        if text is not None and len(text) <= MAX_ECHO:
            out["input"] = value
        else:
            shown = repr(value)
            out["input_excerpt"] = shown[:MAX_ECHO] + ("..." if len(shown) > MAX_ECHO else "")
    return out


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
    token: str | None = None, future_tolerance: int = FUTURE_TOLERANCE,
    allowed_hosts: tuple[str, ...] | None = None,
) -> FastAPI:
    """Load the model, open (or create) the state store, compute states from `history`."""
    forecaster = Forecaster.load(model_dir)
    version = model_version(model_dir)
    store = Store(state)
    store.bind(version)
    online = OnlineForecaster(forecaster, store, future_tolerance)
    if history is not None:
        online.initialise(history)
    app = create_app(online, token, version, allowed_hosts)
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

    _exit_with_parent(int(os.environ.get("STARCAST_PARENT", os.getppid())))
    torch.set_num_threads(1)  # one core per worker
    hosts = os.environ.get("STARCAST_ALLOWED_HOSTS")
    return app_from_files(os.environ["STARCAST_MODEL"], os.environ["STARCAST_STATE"],
                          token=os.environ.get("STARCAST_TOKEN"),
                          allowed_hosts=None if hosts is None else tuple(hosts.split(",")),
                          future_tolerance=int(os.environ.get("STARCAST_FUTURE_TOLERANCE",
                                                              FUTURE_TOLERANCE)))


def _exit_with_parent(parent: int) -> None:
    """A worker whose parent (pid `parent`, the `starcast serve` that started it) dies, SIGKILL
    included, must not go on serving the port: the kernel sends it SIGTERM then (Linux's
    PR_SET_PDEATHSIG); elsewhere a thread watches. A parent already gone (it died while this
    worker was starting) ends the worker at once."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(1, signal.SIGTERM, 0, 0, 0) == 0:  # 1: PR_SET_PDEATHSIG
            if os.getppid() != parent:  # (it died before the call)
                os.kill(os.getpid(), signal.SIGTERM)
            return
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()
