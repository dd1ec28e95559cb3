"""Investigation queries: "what did this agent do, on whose authority, with what data".

Each function takes a `ReadOnlyQuery` and returns plain rows (dicts), so the CLI
(`tooltrail investigate ...`), the read API and the dashboard can share them:

    rq = ReadOnlyQuery(config)
    session_timeline(rq, "s-31a")                        # ordered events + alerts + chain status
    principal_activity(rq, "user_8842", since=..., until=...)   # or principal_sessions(...)
    tool_usage(rq, "send_email", since=...)              # or tool_callers(...)
    inv = alert_investigation(rq, "al_1a2b")             # {alert, events}: evidence + session context

Event rows carry: ts, chain_id, seq, hash (chain hash), event_id, principal, agent, session, source, server, tool,
decision, result, reason, scope_checked, latency_ms, result_bytes, redaction_count,
redaction_markers (the `[REDACTED:type:fingerprint]` markers in the arguments), alerts (ids of
alerts citing the event), chain_status, args (JSON text).

chain_status: "signed" - the event's position is covered by a checkpoint in the lake (run
`verify` / `verify=True` to check signatures and hashes); "unsigned" - written after the
latest checkpoint; with verify=True: "verified" (inclusion proof under a signature-checked
checkpoint) or "FAILED: <reason>".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from tooltrail.saved import parse_time

MARKER_RE = r"\[REDACTED:[A-Za-z0-9_.-]+:[0-9A-Fa-f]+\]"
DEFAULT_LIMIT = 1000
DEFAULT_CONTEXT_S = 1800.0

EVENT_COLUMNS = ["ts", "chain_id", "seq", "hash", "event_id", "principal", "agent", "session", "source", "server", "tool",
                 "decision", "result", "reason", "scope_checked", "latency_ms", "result_bytes", "redaction_count",
                 "redaction_markers", "alerts", "chain_status", "args"]
TIMELINE_COLUMNS = ["ts", "principal", "agent", "server", "tool", "decision", "result", "reason", "scope_checked",
                    "redaction_markers", "alerts", "chain_id", "seq", "chain_status", "event_id"]
ALERT_COLUMNS = ["alert_id", "severity", "status", "rule_id", "title", "principal", "agent", "session", "server", "tools",
                 "match_count", "suppressed_count", "evidence_total", "first_seen", "last_seen", "updated_by", "note",
                 "runbook", "context", "evidence"]

# Shared pieces: checkpoint coverage per chain, alerts citing each event.
_WITH = f"""WITH cp AS (SELECT chain_id, max(size) AS signed_size FROM checkpoints GROUP BY chain_id),
refs AS (
  SELECT event_id, list(DISTINCT alert_id ORDER BY alert_id) AS alerts FROM (
    SELECT alert_id, unnest(CAST(json_extract_string(evidence, '$[*].event_id') AS VARCHAR[])) AS event_id FROM alerts)
  GROUP BY event_id)
SELECT e.ts, e.chain_id, e.seq, e.hash, e.event_id, e.principal, e.agent, e.session, e.source, e.server, e.tool, e.decision,
  e.result, e.reason, e.scope_checked, e.latency_ms, e.result_bytes, e.redaction_count,
  regexp_extract_all(CAST(e.args AS VARCHAR), '{MARKER_RE}') AS redaction_markers,
  coalesce(r.alerts, []) AS alerts,
  CASE WHEN cp.signed_size IS NOT NULL AND e.seq < cp.signed_size THEN 'signed' ELSE 'unsigned' END AS chain_status,
  CAST(e.args AS VARCHAR) AS args
FROM events e LEFT JOIN cp ON cp.chain_id = e.chain_id LEFT JOIN refs r ON r.event_id = e.event_id"""


def plain(v: Any) -> Any:
    """JSON-friendly value: times as stored-form UTC strings, Decimals as numbers."""
    if isinstance(v, datetime):
        return v.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    return v


def plain_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: plain(v) for k, v in r.items()} for r in rows]


class NotFound(LookupError):
    """Nothing matches (message safe to show)."""


def _time(v: Any) -> datetime | None:
    if v is None or v == "":
        return None
    return v if isinstance(v, datetime) else parse_time(str(v))


def _range(where: list[str], params: list[Any], since: Any, until: Any) -> None:
    s, u = _time(since), _time(until)
    if s is not None:
        where.append("e.ts >= ?")
        params.append(s)
    if u is not None:
        where.append("e.ts < ?")
        params.append(u)


def _events(rq: Any, where: list[str], params: list[Any], limit: int, order: str = "e.ts, e.chain_id, e.seq") -> list[dict]:
    sql = f"{_WITH}\nWHERE {' AND '.join(where)}\nORDER BY {order}"
    return rq.rows(sql, params, limit=limit)


# -- session -----------------------------------------------------------------------------------
def session_timeline(rq: Any, session: str, *, since: Any = None, until: Any = None, limit: int = DEFAULT_LIMIT,
                     verify: bool = False) -> list[dict[str, Any]]:
    """Every event of a session in order, with decisions, redaction markers, alerts, chain status."""
    where, params = ["e.session = ?"], [session]
    _range(where, params, since, until)
    rows = _events(rq, where, params, limit)
    if verify and rows:
        verify_rows(rq, rows)
    return rows


# -- principal ----------------------------------------------------------------------------------
def principal_activity(rq: Any, principal: str, *, since: Any = None, until: Any = None,
                       limit: int = DEFAULT_LIMIT) -> list[dict[str, Any]]:
    """What a principal (user / service identity) did: its events in the time range, in order."""
    where, params = ["e.principal = ?"], [principal]
    _range(where, params, since, until)
    return _events(rq, where, params, limit)


def principal_sessions(rq: Any, principal: str, *, since: Any = None, until: Any = None,
                       limit: int = DEFAULT_LIMIT) -> list[dict[str, Any]]:
    """One row per session of the principal: agents, tools, counts of denies / errors /
    redactions, alerts citing its events."""
    where, params = ["e.principal = ?"], [principal]
    _range(where, params, since, until)
    sql = f"""SELECT session, min(ts) AS first_ts, max(ts) AS last_ts, count(*) AS events,
  list(DISTINCT agent ORDER BY agent) FILTER (WHERE agent IS NOT NULL) AS agents,
  list(DISTINCT tool ORDER BY tool) AS tools,
  count(*) FILTER (WHERE decision = 'deny') AS denied,
  count(*) FILTER (WHERE result IN ('error', 'timeout')) AS errors,
  CAST(sum(redaction_count) AS BIGINT) AS redactions,
  list(DISTINCT a ORDER BY a) FILTER (WHERE a IS NOT NULL) AS alerts
FROM ({_WITH} WHERE {' AND '.join(where)}) LEFT JOIN unnest(alerts) AS u(a) ON true
GROUP BY session ORDER BY first_ts"""
    return rq.rows(sql, params, limit=limit)


# -- tool ---------------------------------------------------------------------------------------
def tool_usage(rq: Any, tool: str, *, server: str | None = None, since: Any = None, until: Any = None,
               limit: int = DEFAULT_LIMIT) -> list[dict[str, Any]]:
    """Every call of a tool: who called it, when, with what outcome."""
    where, params = ["e.tool = ?"], [tool]
    if server:
        where.append("e.server = ?")
        params.append(server)
    _range(where, params, since, until)
    return _events(rq, where, params, limit)


def tool_callers(rq: Any, tool: str, *, server: str | None = None, since: Any = None, until: Any = None,
                 limit: int = DEFAULT_LIMIT) -> list[dict[str, Any]]:
    """One row per principal that called the tool: calls, outcome counts, first / last call."""
    where, params = ["tool = ?"], [tool]
    if server:
        where.append("server = ?")
        params.append(server)
    w2: list[str] = []
    _range(w2, params, since, until)
    where += [c.replace("e.ts", "ts") for c in w2]
    sql = f"""SELECT principal, list(DISTINCT server ORDER BY server) AS servers, count(*) AS calls,
  count(*) FILTER (WHERE decision = 'allow') AS allowed, count(*) FILTER (WHERE decision = 'deny') AS denied,
  count(*) FILTER (WHERE result = 'ok') AS ok, count(*) FILTER (WHERE result IN ('error', 'timeout')) AS errors,
  count(DISTINCT session) AS sessions, min(ts) AS first_ts, max(ts) AS last_ts
FROM events WHERE {' AND '.join(where)}
GROUP BY principal ORDER BY calls DESC, principal"""
    return rq.rows(sql, params, limit=limit)


# -- alert --------------------------------------------------------------------------------------
def find_alert(rq: Any, alert_id: str) -> dict[str, Any]:
    """The alert's latest state; a unique prefix of the id is enough."""
    rows = rq.rows("SELECT * FROM alerts WHERE alert_id = ?", [alert_id], limit=2)
    if not rows:
        rows = rq.rows("SELECT * FROM alerts WHERE starts_with(alert_id, ?) ORDER BY alert_id", [alert_id], limit=10)
        if len(rows) > 1:
            raise NotFound(f"alert id prefix {alert_id!r} is ambiguous: {', '.join(r['alert_id'] for r in rows)}")
    if not rows:
        raise NotFound(f"no alert {alert_id!r}")
    row = rows[0]
    for k in ("entities", "context", "evidence", "history"):
        v = row.get(k)
        if isinstance(v, str):
            row[k] = orjson.loads(v)
    return row


@dataclass
class AlertInvestigation:
    alert: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)  # each with `evidence` (bool)
    evidence_ids: list[str] = field(default_factory=list)
    missing_evidence: list[str] = field(default_factory=list)   # cited but not (yet) in the lake
    scope: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"alert": self.alert, "scope": self.scope, "evidence_ids": self.evidence_ids,
                "missing_evidence": self.missing_evidence, "events": self.events}


def alert_investigation(rq: Any, alert_id: str, *, context_s: float = DEFAULT_CONTEXT_S, limit: int = DEFAULT_LIMIT,
                        evidence_only: bool = False, verify: bool = False) -> AlertInvestigation:
    """The alert, its evidence events, and the surrounding session context: the session's
    events from `context_s` before the first match to `context_s` after the last (the
    principal's events when the alert has no session). Evidence rows have evidence=True."""
    a = find_alert(rq, alert_id)
    ids = [e["event_id"] for e in (a.get("evidence") or []) if e.get("event_id")]
    first, last = a.get("first_seen"), a.get("last_seen")
    where: list[str] = []
    params: list[Any] = []
    scope = "evidence"
    if not evidence_only and first is not None and last is not None:
        lo, hi = first - timedelta(seconds=context_s), last + timedelta(seconds=context_s)
        if a.get("session"):
            where.append("(e.session = ? AND e.ts >= ? AND e.ts <= ?)")
            params += [a["session"], lo, hi]
            scope = f"session {a['session']} +/- {context_s:g}s"
        elif a.get("principal"):
            where.append("(e.principal = ? AND e.ts >= ? AND e.ts <= ?)")
            params += [a["principal"], lo, hi]
            scope = f"principal {a['principal']} +/- {context_s:g}s"
    if ids:
        where.append("e.event_id IN (SELECT unnest(?::VARCHAR[]))")
        params.append(ids)
    rows = _events(rq, [" OR ".join(where)], params, limit) if where else []
    idset = set(ids)
    for r in rows:
        r["evidence"] = r["event_id"] in idset
    if verify and rows:
        verify_rows(rq, rows)
    found = {r["event_id"] for r in rows}
    return AlertInvestigation(alert=a, events=rows, evidence_ids=ids,
                              missing_evidence=[i for i in ids if i not in found and not i.startswith("q_")], scope=scope)


# -- chain verification of result rows ---------------------------------------------------------------
def verify_rows(rq: Any, rows: list[dict[str, Any]]) -> None:
    """Check each row's inclusion proof under a signed checkpoint (ingest.proofs); sets
    chain_status to verified / FAILED: reason / unsigned."""
    from ingest.proofs import ProofError, build_bundle, locate, verify_bundle

    layout = rq.layout
    found = {(r[0], r[1]): r for r in locate(layout, [r["event_id"] for r in rows])}
    for r in rows:
        hit = found.get((r["chain_id"], r["seq"]))
        if hit is None:
            r["chain_status"] = "unsigned"
            continue
        try:
            check = verify_bundle(build_bundle(layout, [hit]))
        except ProofError:
            r["chain_status"] = "unsigned"
            continue
        r["chain_status"] = "verified" if check.ok else "FAILED: " + "; ".join(check.problems)[:200]
