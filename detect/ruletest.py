"""Run the tests embedded in rule files (`tooltrail rules test`).

Test events are written compactly: unspecified fields get defaults (principal alice, agent
agent-1, session s1, decision allow, result ok, result_bytes 100); time advances 10 s per
event unless `at: "+5m"` (offset from the test start) or `every` is given; `repeat: N`
expands an event N times. Each test runs the rule alone in a fresh engine (built-in catalog
plus the test's `catalog` overlay, no statistical detectors) and counts the alerts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from detect.alerts import AlertStore
from detect.catalog import Catalog
from detect.engine import DetectionEngine
from detect.rules import Rule
from detect.timeutil import epoch_ts, parse_duration, ts_epoch

TEST_START = "2026-03-02T10:00:00.000000Z"
_DEFAULTS = {"principal": "alice", "agent": "agent-1", "session": "s1", "decision": "allow", "result": "ok",
             "result_bytes": 100}


def expand(items: list[dict[str, Any]], *, quarantine: bool = False, start: str = TEST_START) -> list[dict[str, Any]]:
    base = ts_epoch(start)
    t = base - 10.0
    out: list[dict[str, Any]] = []
    for item in items:
        item = dict(item)
        repeat = int(item.pop("repeat", 1))
        every = parse_duration(item.pop("every", "10s"))
        at = item.pop("at", None)
        for k in range(repeat):
            if k == 0:
                if at is not None:
                    t = base + parse_duration(str(at).lstrip("+"))
                elif "ts" in item or "received_at" in item:
                    t = ts_epoch(item.get("ts") or item["received_at"])
                else:
                    t += 10.0
            else:
                t += every
            n = len(out)
            if quarantine:
                rec = {"received_at": epoch_ts(t), "source": "test", "origin": "test", "reasons": [], "raw": ""}
                rec.update({k2: v for k2, v in item.items() if k2 not in ("received_at",)})
                rec["received_at"] = epoch_ts(t)
            else:
                rec = dict(_DEFAULTS)
                rec.update(item)
                rec["ts"] = epoch_ts(t)
                rec["received_at"] = rec["ts"]
                rec.setdefault("source", "test")
                rec.setdefault("redactions", {})
                if rec["decision"] == "deny" and "result" not in item:
                    rec["result"] = "denied"
                rec["event_id"] = f"t{n:05d}"
                rec["chain_id"] = "test"
                rec["seq"] = n
                rec["hash"] = f"h{n:05d}"
            out.append(rec)
    return out


@dataclass
class TestResult:
    rule_id: str
    test: str
    expected: int
    got: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.expected == self.got


def run_rule_tests(rules: list[Rule], catalog_files: list[Any] | None = None) -> list[TestResult]:
    results: list[TestResult] = []
    for rule in rules:
        for t in rule.spec.tests:
            try:
                cat = Catalog.load(list(catalog_files or []) + ([t.catalog] if t.catalog else []))
                eng = DetectionEngine([rule], cat, AlertStore(None))
                if t.events:
                    eng.process(expand(t.events))
                if t.quarantine:
                    eng.process_quarantine(expand(t.quarantine, quarantine=True))
                got = len(eng.store)
                results.append(TestResult(rule.id, t.name, t.alerts, got))
            except Exception as exc:  # a broken test is a failed test, with the reason
                results.append(TestResult(rule.id, t.name, t.alerts, -1, f"{type(exc).__name__}: {exc}"))
    return results
