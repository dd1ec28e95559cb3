"""Read API (read keys only): events with filters and cursor pagination, a session's
timeline, the latest verification report, inclusion proofs. Queries run on their own small
thread pool through the read-only query layer, so reads never hold up acknowledgements.
Freshness: events are visible once their segment is sealed (storage.segment_max_seconds)."""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson
from fastapi import FastAPI, Path, Query, Request
from starlette.responses import Response

from ingest.http.errors import ApiError, json_response
from ingest.http.models import ErrorBody, EventsPage, TimelinePage, VerifyResult
from ingest.http.ratelimit import retry_after
from tooltrail.logs import get_logger

log = get_logger("tooltrail.http.read")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FILTERS = ("principal", "agent", "session", "tool", "server", "source", "decision", "result")
NAME = {"max_length": 256}


def parse_time(name: str, value: str | None) -> int | None:
    """RFC 3339 timestamp with a zone -> epoch microseconds (422 otherwise)."""
    if value is None:
        return None
    try:
        if len(value) > 64:
            raise ValueError
        dt = datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
        if dt.tzinfo is None or "T" not in value.upper():
            raise ValueError
    except ValueError:
        raise ApiError(422, "invalid_request", f"{name}: expected an RFC 3339 timestamp with a zone, "
                       "e.g. 2026-05-29T11:04:22Z") from None
    return (dt - _EPOCH) // timedelta(microseconds=1)


def encode_cursor(ts_us: int, chain_id: str, seq: int, order: str) -> str:
    raw = orjson.dumps([ts_us, chain_id, seq, order])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str, order: str) -> tuple[int, str, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts_us, chain_id, seq, o = orjson.loads(raw)
        if not (type(ts_us) is int and isinstance(chain_id, str) and type(seq) is int and o == order):
            raise ValueError
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise ApiError(400, "invalid_cursor", "cursor is not one this API issued for this order") from None
    return ts_us, chain_id, seq


def events_page(q: Any, filters: dict[str, Any], since: int | None, until: int | None, limit: int,
                cursor: str | None, order: str, timeout_s: float) -> dict[str, Any]:
    where, params = [], []
    for k, v in filters.items():
        if v is not None:
            where.append(f"{k} = ?")
            params.append(v)
    if since is not None:
        where.append("epoch_us(ts) >= ?")
        params.append(since)
    if until is not None:
        where.append("epoch_us(ts) < ?")
        params.append(until)
    op = ">" if order == "asc" else "<"
    if cursor:
        where.append(f"(epoch_us(ts), chain_id, seq) {op} (?, ?, ?)")
        params.extend(decode_cursor(cursor, order))
    d = "ASC" if order == "asc" else "DESC"
    sql = ("SELECT record, hash, prev_hash, epoch_us(ts) AS ts_us, chain_id, seq FROM events"
           + (" WHERE " + " AND ".join(where) if where else "")
           + f" ORDER BY ts_us {d}, chain_id {d}, seq {d} LIMIT {int(limit) + 1}")
    rows = q.sql(sql, params, limit=limit + 1, timeout_s=timeout_s).to_pylist()
    events = []
    for r in rows[:limit]:
        rec = orjson.loads(r["record"])
        rec["hash"], rec["prev_hash"] = r["hash"], r["prev_hash"]
        events.append(rec)
    nxt = None
    if len(rows) > limit:
        last = rows[limit - 1]
        nxt = encode_cursor(last["ts_us"], last["chain_id"], last["seq"], order)
    return {"events": events, "next_cursor": nxt}


def register_read_routes(app: FastAPI, col: Any, auth_responses: dict) -> None:
    s = col.settings
    E = {"model": ErrorBody}
    RETRY = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}}
    common = {**auth_responses, 400: {**E, "description": "Invalid cursor."},
              503: {**E, "description": "Query timed out or storage unavailable.", "headers": RETRY}}

    def reader(request: Request) -> str:
        key = col.authenticate(request, "read")
        wait = col.read_limiter.bucket(key.name).take(1)
        if wait:
            raise ApiError(429, "rate_limited", "read rate limit exceeded", headers={"Retry-After": retry_after(wait)})
        return key.name

    async def run(fn: Callable[[], Any]) -> Any:
        from tooltrail.query import QueryError

        try:
            return await asyncio.get_running_loop().run_in_executor(col.read_executor, fn)
        except QueryError as exc:
            log.warning("read_query_failed", error=str(exc)[:200])
            raise ApiError(503, "query_failed", "the query failed or timed out; retry",
                           headers={"Retry-After": str(s.retry_after_s)}) from None

    limit_q = Query(100, ge=1, le=s.read_page_max, description="Page size.")

    @app.get("/v1/events", tags=["read"], summary="Stored events, filtered, with cursor pagination",
             response_model=EventsPage, responses=common)
    async def list_events(
        request: Request,
        principal: str | None = Query(None, **NAME), agent: str | None = Query(None, **NAME),
        session: str | None = Query(None, **NAME), tool: str | None = Query(None, **NAME),
        server: str | None = Query(None, **NAME), source: str | None = Query(None, **NAME),
        decision: Literal["allow", "deny"] | None = Query(None),
        result: Literal["ok", "error", "denied", "timeout"] | None = Query(None),
        since: str | None = Query(None, description="Events with ts >= this (RFC 3339).",
                                  json_schema_extra={"format": "date-time"}),
        until: str | None = Query(None, description="Events with ts < this (RFC 3339).",
                                  json_schema_extra={"format": "date-time"}),
        limit: int = limit_q,
        cursor: str | None = Query(None, max_length=2048, description="next_cursor of the previous page."),
        order: Literal["asc", "desc"] = Query("desc", description="By ts (then chain, seq)."),
    ) -> Response:
        reader(request)
        t0, t1 = parse_time("since", since), parse_time("until", until)
        filters = {"principal": principal, "agent": agent, "session": session, "tool": tool, "server": server,
                   "source": source, "decision": decision, "result": result}
        page = await run(lambda: events_page(col.query(), filters, t0, t1, limit, cursor, order, s.read_timeout_s))
        return json_response(page)

    @app.get("/v1/sessions/{session_id}/timeline", tags=["read"], summary="Every event of one session in time order",
             response_model=TimelinePage, responses=common)
    async def timeline(request: Request, session_id: str = Path(..., min_length=1, max_length=256),
                       limit: int = limit_q, cursor: str | None = Query(None, max_length=2048)) -> Response:
        reader(request)
        page = await run(lambda: events_page(col.query(), {"session": session_id}, None, None, limit, cursor, "asc",
                                             s.read_timeout_s))
        page["session"] = session_id
        return json_response(page)

    @app.get("/v1/verify", tags=["read"], summary="The latest verification report (`tooltrail verify`)",
             response_model=VerifyResult, responses=auth_responses)
    async def last_verify(request: Request) -> Response:
        from ingest.verify import last_report

        reader(request)
        rep = await run(lambda: last_report(col.layout))
        status = "never_run" if rep is None else ("ok" if rep.get("ok") else "failed")
        return json_response({"status": status, "report": rep})

    proof_model = {"type": "object", "required": ["format", "created_at", "public_key", "checkpoints", "events"],
                   "properties": {"format": {"type": "string"}, "created_at": {"type": "string"},
                                  "public_key": {"type": "string"}, "checkpoints": {"type": "object"},
                                  "events": {"type": "array", "items": {"type": "object"}}, "meta": {"type": "object"}}}

    @app.get("/v1/proofs/{event_id}", tags=["read"], summary="Inclusion-proof bundle for one event (verify offline "
             "with `tooltrail verify-proof`)",
             responses={200: {"description": "A tooltrail.proof.v1 bundle.",
                              "content": {"application/json": {"schema": proof_model}}},
                        **common, 404: {**E, "description": "No such event in a sealed segment."},
                        409: {**E, "description": "Stored but no signed checkpoint covers it yet; retry.",
                              "headers": RETRY}})
    async def proof(request: Request, event_id: str = Path(..., min_length=1, max_length=128,
                                                           pattern=r"^[A-Za-z0-9._:\-]+$")) -> Response:
        from ingest.proofs import ProofError, build_bundle, locate

        reader(request)

        def _prove() -> dict[str, Any] | None:
            rows = locate(col.layout, [event_id])
            return build_bundle(col.layout, rows, {"event_id": event_id}) if rows else None

        try:
            bundle = await run(_prove)
        except ProofError as exc:
            raise ApiError(409, "not_yet_provable", str(exc)[:300], headers={"Retry-After": "10"}) from None
        if bundle is None:
            raise ApiError(404, "not_found", "no stored event with this id (events are visible once sealed)")
        return json_response(bundle)
