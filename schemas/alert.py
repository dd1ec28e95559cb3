"""Alert: what the detection engine raises, the alert store keeps, webhooks deliver and the
dashboard shows. This model is a contract - fields are only ever added.

Identity
- `dedup_key`: rule id plus the rule's group-by values ("TT-EXFIL-001|session=s_31a"); repeated
  matches with the same key fold into one alert while it is open (within the rule's group window).
- `alert_id`: deterministic - a hash of rule id, dedup key and the first evidence event id - so
  a live run and a backtest over the same events produce the same ids.

Times: `first_seen` / `last_seen` are *event* times (the `ts` of the first / last matching
event); `created_at` / `updated_at` are wall-clock times of the store write. All are UTC and
serialise as "YYYY-MM-DDTHH:MM:SS.ffffffZ" (the stored-record form).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer

ALERT_SCHEMA_VERSION = 1

Severity = Literal["low", "medium", "high", "critical"]
SEVERITIES: tuple[str, ...] = ("low", "medium", "high", "critical")
Status = Literal["open", "acknowledged", "resolved"]
STATUSES: tuple[str, ...] = ("open", "acknowledged", "resolved")
DetectorKind = Literal[
    "match", "threshold", "sequence", "new_term",  # rules as code
    "volume", "deny_ratio", "rare_sequence", "isolation_forest",  # statistical detectors
]
_TS_FMT = "%Y-%m-%dT%H:%M:%S.%fZ"


def fmt_ts(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime(_TS_FMT)


class EvidenceRef(BaseModel):
    """A pointer to one stored event: enough to fetch it and to verify it against the chain."""

    model_config = ConfigDict(extra="forbid")

    event_id: str
    chain_id: str | None = None
    seq: int | None = None
    hash: str | None = None
    ts: str | None = Field(None, description="Event time of the referenced event (stored form).")


class StatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Status
    who: str = Field(min_length=1, max_length=256)
    at: datetime
    note: str | None = Field(None, max_length=8192)

    @field_serializer("at")
    def _ser_at(self, v: datetime) -> str:
        return fmt_ts(v)


class AlertEntities(BaseModel):
    model_config = ConfigDict(extra="forbid")

    principal: str | None = None
    agent: str | None = None
    session: str | None = None
    server: str | None = None
    source: str | None = None
    tools: list[str] = Field(default_factory=list)


class Alert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = ALERT_SCHEMA_VERSION
    alert_id: str
    dedup_key: str
    rule_id: str
    rule_version: int = 1
    title: str
    severity: Severity
    tags: list[str] = Field(default_factory=list, description="Threat classes (see detect/taxonomy.py).")
    description: str = ""
    runbook: str = ""
    detector: DetectorKind
    status: Status = "open"
    history: list[StatusChange] = Field(default_factory=list, description="Lifecycle changes, oldest first.")
    match_count: int = Field(1, ge=0, description="Matches folded into this alert (grouping).")
    suppressed_count: int = Field(0, ge=0, description="Matches counted but not raised (suppression window / suppression list).")
    first_seen: datetime
    last_seen: datetime
    created_at: datetime
    updated_at: datetime
    entities: AlertEntities = Field(default_factory=AlertEntities)
    context: dict[str, Any] = Field(default_factory=dict)
    evidence: list[EvidenceRef] = Field(default_factory=list, description="Capped; see evidence_total.")
    evidence_total: int = Field(0, ge=0, description="Evidence events seen, including those beyond the cap.")
    score: float | None = Field(None, description="Statistical detectors: the change / anomaly score.")
    actual: float | None = None
    expected: float | None = None

    @field_serializer("first_seen", "last_seen", "created_at", "updated_at")
    def _ser_ts(self, v: datetime) -> str:
        return fmt_ts(v)

    def content_key(self) -> dict[str, Any]:
        """The alert without wall-clock fields: equal for a live run and a backtest."""
        d = self.model_dump(mode="json")
        for k in ("created_at", "updated_at", "history", "status"):
            d.pop(k, None)
        return d


def make_alert_id(rule_id: str, dedup_key: str, first_event_id: str) -> str:
    h = hashlib.sha256(f"{rule_id}\x1f{dedup_key}\x1f{first_event_id}".encode()).hexdigest()
    return "al_" + h[:24]
