"""The HTTP collector and read API (FastAPI).

    app = create_app(config)                      # opens Ingestor(config, "http") on startup
    app = create_app(config, ingestor=ing)        # caller owns the Ingestor (not closed here)
    app = create_app(config, listeners=[engine.process])            # live detection
    app = create_app(config, on_startup=lambda ing: ing.add_listener(fn))

Ingest: POST /v1/events (one event, a JSON array or NDJSON; gzip optional), per-source API
keys, per-source rate limits, 2xx only after the batch is durable. Read: GET /v1/events,
/v1/sessions/{id}/timeline, /v1/verify, /v1/proofs/{event_id} with separate read keys.
Operations: /healthz, /readyz, /metrics. Every error is a JSON body without internals.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from ingest.adapters.expand import TooManyRecords, expand_records
from ingest.apikeys import ApiKey, KeyRing
from ingest.http import body as bodies
from ingest.http.errors import ApiError, api_error_response, error_response, json_response, unauthorized
from ingest.http.metrics import Metrics
from ingest.http.middleware import GuardMiddleware
from ingest.http.models import ErrorBody, Health, IngestResult, MalformedBody, Ready
from ingest.http.openapi import build_openapi
from ingest.http.ratelimit import RateLimiter, retry_after
from tooltrail.logs import get_logger

log = get_logger("tooltrail.http")
StartupHook = Callable[[Any], None]
Listener = Callable[[list[dict[str, Any]]], None]
FORMAT_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class Collector:
    """Per-app state: the Ingestor, keys, limits, executors, metrics."""

    def __init__(self, config: Any, ingestor: Any | None, chain_candidates: Sequence[str],
                 listeners: Iterable[Listener], on_startup: Sequence[StartupHook], on_shutdown: Sequence[StartupHook],
                 keyring: KeyRing | None) -> None:
        self.config = config
        self.settings = config.http
        self.layout = config.layout
        self.ingestor = ingestor
        self.owns_ingestor = ingestor is None
        self.chain_id: str | None = getattr(ingestor, "chain_id", None)
        self.chain_candidates = list(chain_candidates)
        self.listeners = list(listeners)
        self.on_startup = list(on_startup)
        self.on_shutdown = list(on_shutdown)
        self.keyring = keyring or KeyRing.from_config(config)
        s = self.settings
        self.limiter = RateLimiter(s.rate_limit_events_per_s, s.rate_limit_burst, s.max_batch_items, s.source_rate_limits)
        self.read_limiter = RateLimiter(s.read_rate_limit_per_s, None, 2 * s.read_rate_limit_per_s)
        self.executor: ThreadPoolExecutor | None = None
        self.read_executor: ThreadPoolExecutor | None = None
        self.pending_events = 0
        self.pending_requests = 0
        self._pending_lock = threading.Lock()
        self.max_queued_requests = s.submit_threads * 8
        self.metrics = Metrics(self.sample)
        self.started = False
        self.stopping = False
        self._ids = itertools.count(1)
        self._id_prefix = f"{os.getpid():x}-{int(time.time()) & 0xFFFFFF:x}"
        self._adapters: dict[str, Any] = {}
        self._query: Any = None
        self._recover_task: asyncio.Task | None = None
        self._last_recover = 0.0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        s = self.settings
        if self.ingestor is None:
            self.ingestor, self.chain_id = _open_ingestor(self.config, self.chain_candidates)
        for fn in self.listeners:
            self.ingestor.add_listener(fn)
        for hook in self.on_startup:
            hook(self.ingestor)
        self.executor = ThreadPoolExecutor(s.submit_threads, thread_name_prefix="ingest")
        self.read_executor = ThreadPoolExecutor(2, thread_name_prefix="read")
        self.started = True
        log.info("collector_started", chain_id=self.chain_id, sources=len(self.keyring.sources()),
                 keys=len(self.keyring.keys))
        if not self.keyring.keys:
            log.warning("no_api_keys", hint="every request will get 401; run `tooltrail keys create NAME`")

    def stop(self) -> None:
        self.stopping = True
        for ex in (self.executor, self.read_executor):
            if ex is not None:
                ex.shutdown(wait=True)
        for hook in self.on_shutdown:
            try:
                hook(self.ingestor)
            except Exception as exc:
                log.error("shutdown_hook_failed", error_type=type(exc).__name__)
        if self.owns_ingestor and self.ingestor is not None:
            self.ingestor.close()
        log.info("collector_stopped", chain_id=self.chain_id)

    async def recovery_loop(self) -> None:
        """While the write-ahead log is failed (disk full, read-only, I/O error), retry it
        every second so the collector recovers by itself, even without traffic."""
        loop = asyncio.get_running_loop()
        while not self.stopping:
            await asyncio.sleep(1.0)
            if self.ingestor is not None and not self.ingestor.healthy() and not self.stopping:
                with contextlib.suppress(Exception):
                    await loop.run_in_executor(self.executor, self.try_recover)

    def try_recover(self) -> bool:
        ing = self.ingestor
        if ing is None or ing.healthy():
            return True
        self._last_recover = time.monotonic()
        try:
            ing.recover()
        except OSError:
            return False
        log.info("storage_recovered", chain_id=self.chain_id)
        return ing.healthy()

    def sample(self) -> dict[str, Any]:
        ing = self.ingestor
        out: dict[str, Any] = {"chain_id": self.chain_id, "pending_events": self.pending_events,
                               "pending_requests": self.pending_requests}
        if ing is not None:
            out["healthy"] = 1 if ing.healthy() else 0
            out["unsealed"] = ing.unsealed
            out["chain_size"] = ing.size
            from ingest.segments import live_segments

            with contextlib.suppress(Exception):  # a manifest being rewritten must not break the scrape
                out["segments"] = len(live_segments(self.layout, self.chain_id))
        return out

    # ------------------------------------------------------------------ helpers
    def request_id(self) -> str:
        return f"{self._id_prefix}-{next(self._ids):x}"

    def authenticate(self, request: Request, kind: str) -> ApiKey:
        header = request.headers.get("authorization")
        if not header:
            raise unauthorized()
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized()
        key = self.keyring.authenticate(token.strip())
        if key is None:
            raise unauthorized()
        if key.kind != kind:
            raise ApiError(403, "forbidden", f"this key is not allowed to {'ingest' if kind == 'ingest' else 'read'}")
        return key

    def unavailable(self, code: str, detail: str) -> ApiError:
        self.metrics.refused.labels(code).inc()
        return ApiError(503, code, detail, headers={"Retry-After": str(self.settings.retry_after_s)})

    def adapter(self, fmt: str | None) -> Any:
        """The gateway adapter for ?format=NAME (None for the v1 wire format); 400 if unknown."""
        if fmt is None or fmt in ("", "v1"):
            return None
        if not FORMAT_RE.match(fmt):
            raise ApiError(400, "unknown_format", "unknown format")
        a = self._adapters.get(fmt)
        if a is None:
            try:
                from ingest.adapters import get_adapter

                a = get_adapter(fmt)
            except (ImportError, KeyError, ValueError, LookupError):
                raise ApiError(400, "unknown_format", f"unknown format {fmt[:64]!r}") from None
            self._adapters[fmt] = a
        return a

    def query(self) -> Any:
        if self._query is None:
            from tooltrail.query import ReadOnlyQuery

            self._query = ReadOnlyQuery(self.config, memory_limit="512MB", threads=1)
        return self._query

    # ------------------------------------------------------------------ the ingest work (worker thread)
    def process(self, raw: bytes, encoding: str, kind: str, source: str, adapter: Any, rid: str,
                t_queued: float) -> tuple[int, dict[str, Any]]:
        s = self.settings
        if self.stopping:
            raise self.unavailable("shutting_down", "the collector is shutting down; retry")
        batch = bodies.decode_items(raw, encoding, kind, s.max_decompressed_bytes, s.max_batch_items)
        items, origin, skipped, mapper = batch.items, None, 0, None
        if adapter is not None:
            try:
                items, origin, skipped, mapper = expand_records(batch.items, adapter, s.max_batch_items)
            except TooManyRecords as exc:
                raise ApiError(413, "too_many_items", str(exc), limit=s.max_batch_items) from exc
        n = max(1, len(items))
        wait = self.limiter.bucket(source).take(n)
        if wait:
            self.metrics.refused.labels("rate_limited").inc()
            raise ApiError(429, "rate_limited", f"source {source!r} is over its rate limit of "
                           f"{self.limiter.bucket(source).rate:g} events/s", headers={"Retry-After": retry_after(wait)})
        with self._pending_lock:
            if self.pending_events and self.pending_events + n > s.max_pending_events:
                raise self.unavailable("backpressure", "the write-ahead log is behind; retry later")
            self.pending_events += n
        try:
            ing = self.ingestor
            if not ing.healthy() and (time.monotonic() - self._last_recover < 0.2 or not self.try_recover()):
                raise self.unavailable("storage_unavailable", "storage is not writable (disk full, read-only "
                                       "or I/O error); nothing was acknowledged, retry")
            try:
                res = ing.submit(items, source=source, mapper=mapper)
            except OSError as exc:  # WalError, ENOSPC on quarantine: nothing is acknowledged
                log.error("storage_write_failed", chain_id=self.chain_id, request_id=rid, error_type=type(exc).__name__,
                          errno=getattr(exc, "errno", None))
                raise self.unavailable("storage_unavailable", "storage is not writable (disk full, read-only or I/O "
                                       "error); nothing was acknowledged, retry") from None
        finally:
            with self._pending_lock:
                self.pending_events -= n
        errors = []
        for r in res.rejected:
            index, sub = origin[r.index] if origin is not None else (r.index, None)
            e: dict[str, Any] = {"index": index, "field": r.field, "reason": r.reason}
            if batch.lines is not None and 0 <= index < len(batch.lines):
                e["line"] = batch.lines[index]
            if sub is not None:
                e["record"] = sub
            errors.append(e)
        rejected_items = len({r.index for r in res.rejected})
        m = self.metrics
        if res.stored:
            m.events.labels(source, "stored").inc(res.stored)
        if res.duplicates:
            m.events.labels(source, "duplicate").inc(res.duplicates)
        if rejected_items:
            m.events.labels(source, "rejected").inc(rejected_items)
        status = 200
        if rejected_items:
            status = 207 if res.stored + res.duplicates + skipped else 422
        out = {"stored": res.stored, "duplicates": res.duplicates, "rejected": rejected_items, "errors": errors,
               "chain_id": self.chain_id, "request_id": rid}
        if adapter is not None:
            out["skipped"] = skipped
        return status, out


def allowed_methods(app: FastAPI, scope: dict) -> list[str]:
    from starlette.routing import Match

    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches({**scope, "method": "\x00"})
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods - {"HEAD"} if "GET" in methods else methods)


def _open_ingestor(config: Any, candidates: Sequence[str]) -> tuple[Any, str]:
    """Open the first chain nobody owns (one writer per chain; workers share the candidates)."""
    from ingest.pipeline import ChainBusyError, Ingestor

    last: Exception | None = None
    for chain in candidates:
        try:
            return Ingestor.open(config, chain), chain
        except ChainBusyError as exc:
            last = exc
    raise last or RuntimeError("no chain to open")


# ---------------------------------------------------------------------- OpenAPI fragments
E = {"model": ErrorBody}
RETRY = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {**E, "description": "Missing or invalid API key."},
    403: {**E, "description": "The key is valid but not for this kind of access (ingest vs read)."},
    429: {**E, "description": "Rate limit exceeded.", "headers": RETRY},
}
INGEST_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": IngestResult, "description": "Every item stored (or a duplicate); durable before this response."},
    207: {"model": IngestResult, "description": "Some items rejected (quarantined, see errors); the others are durable."},
    400: {"model": MalformedBody, "description": "Malformed JSON (with position), bad encoding, empty body, unknown "
          "format."},
    **AUTH_RESPONSES,
    408: {**E, "description": "The body did not arrive within the request timeout."},
    413: {**E, "description": "Body, decompressed body or number of items over the limit."},
    415: {**E, "description": "Unsupported Content-Type or Content-Encoding."},
    422: {"model": IngestResult, "description": "Every item was rejected (quarantined, see errors)."},
    503: {**E, "description": "Storage unavailable or behind (disk full, read-only, WAL failure, shutting down); "
          "nothing was acknowledged. Retry after Retry-After.", "headers": RETRY},
}


def create_app(config: Any, ingestor: Any | None = None, *, chain_id: str | None = None,
               chain_candidates: Sequence[str] | None = None, listeners: Iterable[Listener] = (),
               on_startup: StartupHook | Sequence[StartupHook] | None = None,
               on_shutdown: StartupHook | Sequence[StartupHook] | None = None,
               keyring: KeyRing | None = None) -> FastAPI:
    """The collector app. Without `ingestor`, it opens `Ingestor.open(config, chain)` on
    startup (chain: `chain_id`, else the first free of `chain_candidates`, else
    config.http.chain) and closes it on shutdown. `listeners` are added to the Ingestor
    (called with durable records, e.g. the detection engine's `process`); `on_startup(ingestor)`
    hooks run once the Ingestor is open, `on_shutdown(ingestor)` before it is closed."""

    def _hooks(h: StartupHook | Sequence[StartupHook] | None) -> list[StartupHook]:
        return [] if h is None else [h] if callable(h) else list(h)

    candidates = [chain_id] if chain_id else list(chain_candidates or [config.http.chain])
    col = Collector(config, ingestor, candidates, listeners, _hooks(on_startup), _hooks(on_shutdown), keyring)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await asyncio.get_running_loop().run_in_executor(None, col.start)
        col._recover_task = asyncio.create_task(col.recovery_loop())
        try:
            yield
        finally:
            col.stopping = True
            col._recover_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await col._recover_task
            await asyncio.get_running_loop().run_in_executor(None, col.stop)

    app = FastAPI(title="ToolTrail collector", version="1",
                  description="Authenticated, durable ingest of AI-agent tool-call events and a read API over the "
                              "tamper-evident store.",
                  docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.collector = col
    app.add_middleware(GuardMiddleware, metrics=col.metrics, access_log=config.http.access_log)

    # ------------------------------------------------------------------ error handlers
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return api_error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: "not_found", 405: "method_not_allowed"}
        detail = exc.detail if isinstance(exc.detail, str) else "request refused"
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method of the path, not only those of the first matching route
            headers["Allow"] = ", ".join(allowed_methods(app, request.scope))
        return error_response(exc.status_code, codes.get(exc.status_code, "http_error"), detail, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        errs = [{"field": ".".join(str(p) for p in e.get("loc", ())), "reason": str(e.get("msg", ""))[:300]}
                for e in exc.errors()][:50]
        return error_response(422, "invalid_request", "; ".join(f"{e['field']}: {e['reason']}" for e in errs)[:1000],
                              errors=errs)

    # ------------------------------------------------------------------ ingest
    @app.post("/v1/events", tags=["ingest"], summary="Ingest tool-call events", response_model=IngestResult,
              responses=INGEST_RESPONSES, openapi_extra={"x-tooltrail-body": True, "parameters": [
                  {"name": "format", "in": "query", "required": False, "schema": {"type": "string"},
                   "description": "Gateway/adapter format of the items (default v1 = ToolTrail wire format); unknown "
                                  "formats get 400."}]})
    async def post_events(request: Request) -> Response:
        # Hand-parsed (body and `format`): no per-request dependency solving on the hot path.
        t0 = time.perf_counter()
        s = col.settings
        format = request.query_params.get("format")  # noqa: A001
        key = col.authenticate(request, "ingest")
        source = key.name
        wait = col.limiter.bucket(source).empty()
        if wait:
            col.metrics.refused.labels("rate_limited").inc()
            raise ApiError(429, "rate_limited", f"source {source!r} is over its rate limit",
                           headers={"Retry-After": retry_after(wait)})
        if not col.started or col.stopping:
            raise col.unavailable("not_ready", "the collector is starting or stopping; retry")
        if col.pending_requests >= col.max_queued_requests:
            raise col.unavailable("backpressure", "too many batches waiting for the write-ahead log; retry later")
        kind = bodies.media_kind(request.headers.get("content-type"))
        encoding = bodies.content_encoding(request.headers.get("content-encoding"))
        adapter = col.adapter(format)
        deadline = t0 + s.request_timeout_s
        try:
            async with asyncio.timeout(s.request_timeout_s):  # no extra task, unlike wait_for
                raw = await bodies.read_body(request, s.max_body_bytes)
        except TimeoutError:
            raise ApiError(408, "request_timeout", "the body did not arrive in time") from None
        rid = col.request_id()
        loop = asyncio.get_running_loop()
        col.pending_requests += 1
        try:
            fut = loop.run_in_executor(col.executor, col.process, raw, encoding, kind, source, adapter, rid,
                                       time.perf_counter())
            try:
                async with asyncio.timeout(max(0.001, deadline - time.perf_counter())):
                    status, result = await asyncio.shield(fut)
            except TimeoutError:
                # The batch may still become durable; a retry with the same event ids is a duplicate.
                raise col.unavailable("ack_timeout", "the batch was not durable within the request timeout; "
                                      "retry (retries are idempotent)") from None
        finally:
            col.pending_requests -= 1
        if status < 300:
            col.metrics.batch_seconds.observe(time.perf_counter() - t0)
            col.metrics.batch_events.observe(result["stored"] + result["duplicates"] + result["rejected"])
        return json_response(result, status, {"X-Request-Id": rid})

    # ------------------------------------------------------------------ operations
    @app.get("/healthz", tags=["operations"], summary="Liveness", response_model=Health)
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz", tags=["operations"], summary="Readiness: the write path accepts events",
             response_model=Ready, responses={503: {"model": Ready, "description": "Not ready.", "headers": RETRY}})
    async def readyz() -> Response:
        ing = col.ingestor
        healthy = bool(ing is not None and ing.healthy())
        if ing is not None and not healthy and time.monotonic() - col._last_recover > 1.0:
            healthy = await asyncio.get_running_loop().run_in_executor(col.executor, col.try_recover)
        checks = {"started": col.started and not col.stopping, "storage_writable": healthy,
                  "not_backlogged": col.pending_events < col.settings.max_pending_events}
        ok = all(checks.values())
        body = {"status": "ready" if ok else "not_ready", "chain_id": col.chain_id, "checks": checks}
        return json_response(body, 200 if ok else 503, None if ok else {"Retry-After": str(col.settings.retry_after_s)})

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics",
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                              "description": "Prometheus text format."}, 401: AUTH_RESPONSES[401],
                        403: AUTH_RESPONSES[403]})
    async def metrics(request: Request) -> Response:
        if not col.settings.metrics_public:
            col.authenticate(request, "read")
        data = await asyncio.get_running_loop().run_in_executor(col.read_executor, col.metrics.render)
        return Response(data, media_type="text/plain; version=0.0.4; charset=utf-8")

    from ingest.http.read import register_read_routes

    register_read_routes(app, col, AUTH_RESPONSES)
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    return app
