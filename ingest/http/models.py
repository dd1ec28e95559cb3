"""Response models: they exist so the OpenAPI document describes exactly what is sent."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    error: str = Field(description="Machine-readable error code, e.g. unauthorized, malformed_json, body_too_large.")
    detail: str = Field(description="Human-readable explanation.")


class MalformedBody(ErrorBody):
    position: int | None = Field(None, description="Byte offset of the syntax error in the (decoded) body.")
    line: int | None = Field(None, description="1-based line of the syntax error.")
    column: int | None = Field(None, description="1-based column of the syntax error.")


class RejectedItem(BaseModel):
    index: int = Field(description="0-based position of the item in the batch (array index / NDJSON item).")
    field: str = Field(description="Dotted path of the offending field, or '(event)' for the whole item.")
    reason: str
    line: int | None = Field(None, description="1-based line of the item in an NDJSON body.")
    record: int | None = Field(None, description="?format=: which record of the item (gateway documents that hold "
                                                 "several records).")


class IngestResult(BaseModel):
    stored: int = Field(description="Events appended to the chain and durable (fsync'd) before this response.")
    duplicates: int = Field(description="Events whose event_id was already stored (idempotent retries).")
    rejected: int = Field(description="Items rejected and kept in quarantine (see errors).")
    errors: list[RejectedItem] = Field(description="One entry per problem of each rejected item.")
    skipped: int | None = Field(None, description="?format=: gateway records that are not tool calls (not stored).")
    chain_id: str
    request_id: str


class StoredEvent(BaseModel):
    """A stored record (the hashed canonical event) plus its chain links."""

    model_config = ConfigDict(extra="allow")

    event_id: str
    ts: str
    principal: str
    session: str
    tool: str
    decision: str
    source: str
    received_at: str
    chain_id: str
    seq: int
    hash: str
    prev_hash: str


class EventsPage(BaseModel):
    events: list[StoredEvent]
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next page; null on the last page.")


class TimelinePage(EventsPage):
    session: str


class VerifyResult(BaseModel):
    status: Literal["ok", "failed", "never_run"]
    report: dict[str, Any] | None = Field(description="The latest `tooltrail verify` report (null if none ran yet).")


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready", "not_ready"]
    chain_id: str | None
    checks: dict[str, bool]
