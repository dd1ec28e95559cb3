"""Evidence bundles: one file an incident responder hands over, verifiable offline.

    bundle = export_evidence(config, session="s-31a", exported_by="alice")
    bundle = export_evidence(config, alert_id="al_1a2b...")            # evidence + session context
    bundle = export_evidence(config, since="2026-05-29T10:00Z", until="2026-05-29T12:00Z", principal="bob")
    write_bundle(bundle, "incident-42.json")

The file is an `ingest.proofs` bundle (format tooltrail.proof.v1): the stored events (their
canonical records), an inclusion proof for each, the signed checkpoint of each chain and the
public key; `tooltrail verify-bundle FILE` (= `verify-proof`) checks it without the data dir.
`meta.export` says what was exported, by whom, when, and with which query. The meta block is
descriptive: it is not covered by a signature - what verification proves is that each event's
record is exactly what the log holds at that position under a checkpoint signed by the key
(compare the key with the operator's published key, `--trusted-key`).
"""

from __future__ import annotations

import getpass
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from tooltrail import investigate as inv

EVIDENCE_KIND = "tooltrail.evidence.v1"
DEFAULT_MAX_EVENTS = 50_000


class ExportError(ValueError):
    """Nothing to export / not yet provable (message safe to show)."""


def _who(exported_by: str | None) -> str:
    if exported_by:
        return exported_by
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("tooltrail")
    except Exception:  # not installed as a distribution (running from a checkout)
        return "dev"


def select_events(rq: Any, *, session: str | None = None, alert_id: str | None = None, since: Any = None,
                  until: Any = None, principal: str | None = None, tool: str | None = None,
                  context_s: float = inv.DEFAULT_CONTEXT_S, evidence_only: bool = False,
                  max_events: int = DEFAULT_MAX_EVENTS) -> tuple[list[str], dict[str, Any]]:
    """Event ids to export and the description of the selection (meta.export)."""
    spec: dict[str, Any] = {}
    if alert_id:
        got = inv.alert_investigation(rq, alert_id, context_s=context_s, limit=max_events + 1, evidence_only=evidence_only)
        ids = [r["event_id"] for r in got.events]
        a = got.alert
        spec = {"by": "alert", "alert_id": a["alert_id"], "scope": got.scope, "evidence_ids": got.evidence_ids,
                "alert": inv.plain({k: a.get(k) for k in inv.ALERT_COLUMNS + ["dedup_key", "rule_version", "history"]
                                    if k in a}),
                "query": {"function": "tooltrail.investigate.alert_investigation",
                          "args": {"alert_id": a["alert_id"], "context_s": context_s, "evidence_only": evidence_only}}}
        if got.missing_evidence:
            spec["missing_evidence"] = got.missing_evidence
    elif session:
        rows = inv.session_timeline(rq, session, since=since, until=until, limit=max_events + 1)
        ids = [r["event_id"] for r in rows]
        spec = {"by": "session", "session": session,
                "query": {"function": "tooltrail.investigate.session_timeline",
                          "args": inv.plain({"session": session, "since": inv._time(since), "until": inv._time(until)})}}
    elif since is not None or until is not None:
        where, params = [], []
        if principal:
            where.append("e.principal = ?")
            params.append(principal)
        if tool:
            where.append("e.tool = ?")
            params.append(tool)
        inv._range(where, params, since, until)
        rows = rq.rows("SELECT e.event_id FROM events e WHERE " + " AND ".join(where) + " ORDER BY e.ts, e.chain_id, e.seq",
                       params, limit=max_events + 1)
        ids = [r["event_id"] for r in rows]
        spec = {"by": "time_range", "since": inv.plain(inv._time(since)), "until": inv.plain(inv._time(until)),
                "principal": principal, "tool": tool,
                "query": {"sql": "SELECT e.event_id FROM events e WHERE " + " AND ".join(where), "params": inv.plain(params)}}
    else:
        raise ExportError("say what to export: --session ID, --alert ID, or --since/--until")
    if len(ids) > max_events:
        raise ExportError(f"more than {max_events} events match; narrow the selection or raise --max-events")
    if not ids:
        raise ExportError("no stored events match the selection")
    return ids, spec


def export_evidence(config: Any, *, session: str | None = None, alert_id: str | None = None, since: Any = None,
                    until: Any = None, principal: str | None = None, tool: str | None = None,
                    context_s: float = inv.DEFAULT_CONTEXT_S, evidence_only: bool = False,
                    exported_by: str | None = None, max_events: int = DEFAULT_MAX_EVENTS,
                    allow_partial: bool = False, rq: Any = None) -> dict[str, Any]:
    """Select events, prove them (ingest.proofs) and describe the export in meta."""
    from ingest.proofs import ProofError, build_bundle, locate
    from tooltrail.query import ReadOnlyQuery

    rq = rq or ReadOnlyQuery(config)
    ids, spec = select_events(rq, session=session, alert_id=alert_id, since=since, until=until, principal=principal,
                              tool=tool, context_s=context_s, evidence_only=evidence_only, max_events=max_events)
    layout = config.layout
    rows = locate(layout, ids)
    located = {r[2] and orjson.loads(r[2]).get("event_id") for r in rows}
    missing = [i for i in ids if i not in located]
    try:
        bundle = build_bundle(layout, rows, None) if rows else None
    except ProofError as exc:
        raise ExportError(str(exc)) from exc
    if missing and not allow_partial:
        raise ExportError(f"{len(missing)} of {len(ids)} selected events are not yet in a sealed, signed segment "
                          f"(e.g. {missing[0]}); wait for the next checkpoint and retry, or pass --allow-partial")
    if bundle is None:
        raise ExportError("none of the selected events is in a sealed segment yet")
    bundle["meta"] = {
        "kind": EVIDENCE_KIND,
        "export": spec,
        "exported_by": _who(exported_by),
        "exported_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "exported_with": f"tooltrail {_version()}",
        "pid": os.getpid(),
        "selected_events": len(ids),
        "proven_events": len(bundle["events"]),
        "unproven_event_ids": missing,
        "note": "meta is descriptive and not signed; verification proves each event record and its position "
                "in the log under the signed checkpoint(s).",
    }
    return bundle


def write_bundle(bundle: dict[str, Any], path: str | Path) -> Path:
    """Write atomically (temp file + rename)."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_bytes(orjson.dumps(bundle, option=orjson.OPT_INDENT_2) + b"\n")
    os.replace(tmp, p)
    return p


def describe(bundle: dict[str, Any]) -> str:
    """One line saying what an evidence bundle holds (for verify-bundle)."""
    meta = bundle.get("meta") or {}
    if meta.get("kind") != EVIDENCE_KIND:
        return "proof bundle (no export description)"
    ex = meta.get("export") or {}
    what = {"alert": f"alert {ex.get('alert_id')} ({ex.get('scope')})", "session": f"session {ex.get('session')}",
            "time_range": f"events {ex.get('since')} .. {ex.get('until')}"}.get(ex.get("by"), str(ex.get("by")))
    return f"{what}; exported by {meta.get('exported_by')} at {meta.get('exported_at')} (description not signed)"
