"""Measured detection quality (`tooltrail eval`): run the engine over labeled traffic from
`detect.traffic` and report, per detector: recall on the attack kinds it is meant to catch,
precision, false alerts per 10,000 benign events and median time to detect.

Events are turned into stored records in memory (fast, no disk): validated by
`schemas.event.ToolCallEvent`, secrets redacted by the write path's `ingest.redact.Redactor`
(markers `[REDACTED:type:fingerprint]` + `redactions` counts), one hash chain per source, seq,
a content hash. tests/detect/test_follow.py checks that the real store gives the same alerts.

Definitions
- An alert is a true positive when the evidence of any of its matches includes an event of
  an injected attack; otherwise it is a false alert.
- An attack is detected by a detector when one of the detector's matches has an attack
  event in its evidence. Time to detect = event time of that first match - the attack's
  first event.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import statistics
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson

from detect.alerts import AlertStore, Match
from detect.catalog import Catalog
from detect.engine import DetectionEngine
from detect.rules import load_rules
from detect.stats import StatsSettings, default_detectors
from detect.timeutil import epoch_ts, ts_epoch
from detect.traffic import ATTACK_KINDS, DEMO_CATALOG, LabeledEvent, generate

_SECRET_PATTERNS = (
    ("aws_access_key", re.compile(r"\bAKIA[0-9A-Z]{16}\b")),
    ("github_token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36}\b")),
    ("slack_token", re.compile(r"\bxox[baprs]-[0-9A-Za-z-]{10,}")),
    ("private_key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
)
_KEY = b"tooltrail-eval-redaction-key-0001"


def _redact(v: Any, counts: dict[str, int]) -> Any:
    if isinstance(v, str):
        for name, rx in _SECRET_PATTERNS:
            if rx.search(v):

                def sub(m: re.Match[str], name: str = name) -> str:
                    counts[name] = counts.get(name, 0) + 1
                    fp = hmac.new(_KEY, m.group(0).encode(), hashlib.sha256).hexdigest()[:8]
                    return f"[REDACTED:{name}:{fp}]"

                v = rx.sub(sub, v)
        return v
    if isinstance(v, dict):
        return {k: _redact(x, counts) for k, x in v.items()}
    if isinstance(v, list):
        return [_redact(x, counts) for x in v]
    return v


def _redactor() -> Callable[[dict[str, Any]], tuple[dict[str, Any], dict[str, int]]]:
    """The write path's redactor (fixed evaluation key); a minimal simulation without it."""
    try:
        from ingest.redact import Redactor
    except ImportError:  # pragma: no cover - ingest always ships with detect
        def sim(fields: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
            counts: dict[str, int] = {}
            return _redact(fields, counts), counts
        return sim
    return Redactor(_KEY).redact_fields


def build_records(items: list[LabeledEvent], validate: bool = True) -> list[dict[str, Any]]:
    """Stored-record dicts (in memory) for the events among `items`, in order: validated,
    redacted by the write path's Redactor, one hash chain per source."""
    from schemas.event import ToolCallEvent
    from schemas.stored import build_record, event_fields

    redact = _redactor()

    seqs: dict[str, int] = defaultdict(int)
    prev: dict[str, str] = {}
    out = []
    for it in items:
        ev = it.event
        if ev is None:
            continue
        fields = event_fields(ToolCallEvent.model_validate(ev)) if validate else dict(ev)
        fields, counts = redact(fields)
        chain = f"{it.source}-0"
        recv = epoch_ts(ts_epoch(fields["ts"]) + 0.05)
        rec = build_record(
            fields, source=it.source, received_at=recv, redactions=counts, chain_id=chain, seq=seqs[chain]
        )
        seqs[chain] += 1
        h = hashlib.sha256(prev.get(chain, "").encode() + orjson.dumps(rec, option=orjson.OPT_SORT_KEYS)).hexdigest()
        prev[chain] = h
        rec["hash"] = h
        out.append(rec)
    return out


@dataclass
class DetectorRow:
    detector: str
    kinds: list[str]
    injected: int = 0
    detected: int = 0
    alerts: int = 0
    true_alerts: int = 0
    false_alerts: int = 0
    ttd: list[float] = field(default_factory=list)

    @property
    def recall(self) -> float | None:
        return self.detected / self.injected if self.injected else None

    @property
    def precision(self) -> float | None:
        return self.true_alerts / self.alerts if self.alerts else None


@dataclass
class EvalResult:
    events: int
    benign_events: int
    attacks: int
    rows: list[DetectorRow]
    kinds: dict[str, dict[str, Any]]
    false_alerts: int
    seconds: float

    @property
    def false_per_10k(self) -> float:
        return self.false_alerts / self.benign_events * 10_000 if self.benign_events else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "benign_events": self.benign_events,
            "attacks": self.attacks,
            "false_alerts": self.false_alerts,
            "false_alerts_per_10k_benign": round(self.false_per_10k, 3),
            "seconds": round(self.seconds, 2),
            "detectors": [
                {
                    "detector": r.detector,
                    "kinds": r.kinds,
                    "injected": r.injected,
                    "detected": r.detected,
                    "recall": r.recall,
                    "precision": r.precision,
                    "alerts": r.alerts,
                    "false_alerts": r.false_alerts,
                    "false_per_10k_benign": round(r.false_alerts / self.benign_events * 10_000, 3)
                    if self.benign_events
                    else 0,
                    "median_ttd_s": statistics.median(r.ttd) if r.ttd else None,
                }
                for r in self.rows
            ],
            "kinds": self.kinds,
        }


def evaluate(
    seed: int = 1,
    days: int = 5,
    principals: int = 60,
    attacks_per_kind: int = 3,
    *,
    batch: int = 2000,
    validate: bool = True,
    progress: Any = None,
    items: list[LabeledEvent] | None = None,
    stats: StatsSettings | None = None,
) -> EvalResult:
    import time as _t

    t_start = _t.perf_counter()
    if items is None:
        items = list(
            generate(seed=seed, days=days, principals=principals, attacks=True, attacks_per_kind=attacks_per_kind)
        )
    records = build_records(items, validate=validate)
    label: dict[str, str] = {}
    attack_kind: dict[str, str] = {}
    attack_first: dict[str, float] = {}
    ev_iter = iter(records)
    for i, it in enumerate(items):
        if it.event is None:
            it.quarantine["event_id"] = f"q-{seed}-{i:08d}"  # type: ignore[index]
        eid = it.event["event_id"] if it.event is not None else it.quarantine["event_id"]  # type: ignore[index]
        if it.attack_id:
            label[eid] = it.attack_id
            attack_kind[it.attack_id] = it.attack_kind  # type: ignore[assignment]
            t = ts_epoch(it.t)
            attack_first[it.attack_id] = min(attack_first.get(it.attack_id, t), t)
    del ev_iter

    matches: list[tuple[str, str | None, float, set[str]]] = []

    def on_match(m: Match, aid: str | None) -> None:
        ids = {str(r.get("event_id")) for r in m.evidence}
        matches.append((m.meta.rule_id, aid, m.ts, {label[i] for i in ids if i in label}))

    catalog = Catalog.load([DEMO_CATALOG])
    eng = DetectionEngine(
        load_rules(),
        catalog,
        AlertStore(None),
        detectors=default_detectors(stats or StatsSettings()),
        on_match=on_match,
    )
    buf: list[dict[str, Any]] = []
    ri = 0
    done = 0
    for it in items:
        if it.event is not None:
            buf.append(records[ri])
            ri += 1
            if len(buf) >= batch:
                eng.process(buf)
                done += len(buf)
                buf = []
                if progress:
                    progress(done, len(records))
        else:
            if buf:
                eng.process(buf)
                done += len(buf)
                buf = []
            eng.process_quarantine([it.quarantine])  # type: ignore[list-item]
    if buf:
        eng.process(buf)
    eng.flush()

    rule_ids = [r.id for r in eng.rules] + [d.meta.rule_id for d in eng.detectors]
    intended: dict[str, list[str]] = defaultdict(list)
    for k, rid in ATTACK_KINDS.items():
        intended[rid].append(k)
    rows = {rid: DetectorRow(rid, intended.get(rid, [])) for rid in rule_ids}
    alert_true: dict[str, bool] = {}
    alert_rule: dict[str, str] = {}
    first_detect: dict[tuple[str, str], float] = {}
    any_detect: dict[str, float] = {}
    for rid, aid, ts, atks in matches:
        if aid is not None:
            alert_rule[aid] = rid
            alert_true[aid] = alert_true.get(aid, False) or bool(atks)
        for a in atks:
            k = (rid, a)
            if k not in first_detect or ts < first_detect[k]:
                first_detect[k] = ts
            any_detect[a] = min(any_detect.get(a, ts), ts)
    for aid, rid in alert_rule.items():
        row = rows.setdefault(rid, DetectorRow(rid, []))
        row.alerts += 1
        if alert_true[aid]:
            row.true_alerts += 1
        else:
            row.false_alerts += 1
    kinds: dict[str, dict[str, Any]] = {}
    for a, kind in attack_kind.items():
        rid = ATTACK_KINDS[kind]
        row = rows[rid]
        row.injected += 1
        kd = kinds.setdefault(kind, {"detector": rid, "injected": 0, "detected": 0, "detected_any": 0, "ttd": []})
        kd["injected"] += 1
        if a in any_detect:
            kd["detected_any"] += 1
        if (rid, a) in first_detect:
            row.detected += 1
            kd["detected"] += 1
            ttd = max(0.0, first_detect[(rid, a)] - attack_first[a])
            row.ttd.append(ttd)
            kd["ttd"].append(ttd)
    for kd in kinds.values():
        kd["recall"] = kd["detected"] / kd["injected"]
        kd["median_ttd_s"] = statistics.median(kd["ttd"]) if kd["ttd"] else None
        del kd["ttd"]
    benign = sum(1 for it in items if it.event is not None and it.attack_id is None)
    return EvalResult(
        events=len(records),
        benign_events=benign,
        attacks=len(attack_kind),
        rows=list(rows.values()),
        kinds=kinds,
        false_alerts=sum(r.false_alerts for r in rows.values()),
        seconds=_t.perf_counter() - t_start,
    )


def _fmt_pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.0f}%"


def _fmt_ttd(x: float | None) -> str:
    if x is None:
        return "-"
    return str(timedelta(seconds=round(x))) if x >= 60 else f"{x:.1f}s"


def format_table(res: EvalResult) -> str:
    lines = [
        f"events: {res.events} ({res.benign_events} benign), injected attacks: {res.attacks}, "
        f"false alerts: {res.false_alerts} = {res.false_per_10k:.2f} per 10,000 benign events",
        "",
    ]
    hdr = (f"| {'detector':<22} | {'attack kinds':<34} | {'recall':>6} | {'precision':>9} | {'alerts':>6} | "
           f"{'false/10k benign':>16} | {'median TTD':>10} |")
    lines.append(hdr)
    lines.append("|" + "|".join("-" * (len(c)) for c in hdr.split("|")[1:-1]) + "|")
    for r in sorted(res.rows, key=lambda r: r.detector):
        fp = r.false_alerts / res.benign_events * 10_000 if res.benign_events else 0.0
        med = statistics.median(r.ttd) if r.ttd else None
        rec = f"{_fmt_pct(r.recall)}" if r.injected else "-"
        lines.append(
            f"| {r.detector:<22} | {','.join(r.kinds)[:34]:<34} | {rec:>6} | {_fmt_pct(r.precision):>9} | "
            f"{r.alerts:>6} | {fp:>16.2f} | {_fmt_ttd(med):>10} |"
        )
    return "\n".join(lines)
