"""Build a real data dir for the dashboard tests and benchmark through the product's own write
path: events from the labeled traffic generator (`detect.traffic`) go through
`ingest.pipeline.Ingestor` (validate, redact, chain, WAL, segments, signed checkpoints) and the
alerts come from `detect.engine.DetectionEngine` over the stored records.

On top of the generated personas' traffic, one exfiltration chain is injected in session
EXFIL_SESSION twenty minutes before `end`: a mail read, a read of a customer export, and a mail
of it to an outside domain (rule TT-EXFIL-001).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

EXFIL_SESSION = "s-exfil-0042"
EXFIL_PRINCIPAL = "mallory.support"
EXTRA_ATTACKS = ("secret_in_args", "denied_spike", "ssrf", "destructive_no_approval")


@dataclass
class Built:
    config: Any
    events: int
    alerts: list[Any]
    exfil_alert_id: str | None
    exfil_events: list[dict[str, Any]]
    start: datetime
    end: datetime


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def config_for(data_dir: Path | str) -> Any:
    from detect.traffic import DEMO_CATALOG
    from tooltrail.config import load_config

    return load_config(None, data_dir=str(data_dir), env={"TOOLTRAIL_DETECT__CATALOG_FILE": str(DEMO_CATALOG)})


def traffic(end: datetime, days: int, principals: int, seed: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """(source, wire event) in time order: `days` days of personas' traffic up to `end`,
    with a few rule-kind attacks and the injected exfiltration chain."""
    from detect.traffic import exfiltration_session, generate

    start = (end - timedelta(days=days)).replace(microsecond=0)
    t_exfil = end - timedelta(minutes=20)
    chain = exfiltration_session(EXFIL_PRINCIPAL, EXFIL_SESSION, start=t_exfil.timestamp())
    end_s = _iso(end)
    for le in generate(seed=seed, days=days, principals=principals, attacks=True, start=_iso(start).split(".")[0] + "Z",
                       attacks_per_kind=1, kinds=EXTRA_ATTACKS):
        ev = le.event
        if ev is None:
            continue
        if ev["ts"] > end_s:
            break
        while chain and chain[0]["ts"] <= ev["ts"]:
            yield "gw-support", chain.pop(0)
        yield le.source, ev
    for ev in chain:
        yield "gw-support", ev


def build(data_dir: Path | str, *, days: int = 2, principals: int = 20, end: datetime | None = None, seed: int = 3,
          chain_id: str = "local", batch: int = 5000, detect: bool = True) -> Built:
    """Write the traffic through the Ingestor, run the detectors over the stored records,
    and return what was built. Also stores three malformed events (quarantine)."""
    from detect.engine import DetectionEngine
    from ingest.pipeline import Ingestor

    cfg = config_for(data_dir)
    end = (end or datetime.now(UTC)) - timedelta(seconds=30)
    ing = Ingestor.open(cfg, chain_id)
    engine = DetectionEngine.from_config(cfg, with_stats=False) if detect else None
    stored = 0
    first: datetime | None = None
    exfil_records: list[dict[str, Any]] = []

    def flush(source: str, items: list[dict[str, Any]]) -> None:
        nonlocal stored
        res = ing.submit(items, source=source)
        stored += res.stored
        if engine is not None:
            engine.process(res.records)
        exfil_records.extend(r for r in res.records if r.get("session") == EXFIL_SESSION)

    try:
        cur_src, items = None, []
        for src, ev in traffic(end, days, principals, seed):
            if first is None:
                first = datetime.fromisoformat(ev["ts"].replace("Z", "+00:00"))
            if (src != cur_src and items) or len(items) >= batch:
                flush(cur_src, items)
                items = []
            cur_src = src
            items.append(ev)
        if items:
            flush(cur_src, items)
        bad = [{"ts": _iso(end), "session": "s", "tool": "t", "decision": "allow"},
               {"ts": _iso(end), "principal": "p", "session": "s", "tool": "t", "decision": "maybe"},
               {"ts": "yesterday", "principal": "p", "session": "s", "tool": "t", "decision": "allow"}]
        ing.submit(bad, source="gw-legacy")
        ing.flush()
    finally:
        ing.close()
    alerts: list[Any] = []
    exfil_id = None
    if engine is not None:
        alerts = engine.store.alerts()
        engine.save_state()
        exfil = next((a for a in alerts if a.rule_id == "TT-EXFIL-001" and a.entities.session == EXFIL_SESSION), None)
        exfil_id = exfil.alert_id if exfil else None
    return Built(cfg, stored, alerts, exfil_id, exfil_records, first or end, end)
