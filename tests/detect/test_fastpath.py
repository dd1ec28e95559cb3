"""The engine's fast paths decide exactly what the reference path decides.

Fast: the rules index (dispatch per server / tool / decision / result / redaction /
capabilities) with statically decided condition parts folded away, executors bound to
specialised closures (inline keys, known-term sets), batch timestamp parsing, memoised
capabilities / destinations / regex verdicts, the alert store's expiry heap.
Reference: every candidate step with its whole condition through the executors' generic
on_event, timestamps parsed one by one (batches below BATCH_TS_MIN). Same matches (rule,
time, dedup key, evidence, context) and the same alerts, on generated traffic."""

from __future__ import annotations

import random

import orjson

from detect.alerts import AlertStore, Match, RuleMeta
from detect.catalog import Catalog
from detect.conditions import Ctx
from detect.engine import BATCH_TS_MIN, DetectionEngine
from detect.executors import Executor
from detect.rules import RuleSpec, compile_rule, load_rules
from detect.stats import StatsSettings, default_detectors
from detect.timeutil import batch_epochs, ts_epoch
from detect.traffic import DEMO_CATALOG

STATS = StatsSettings(seq_min_total=2000, iforest_min_train=50, deny_min_baseline=50)
_BASE = {"severity": "low", "description": "fast path equivalence", "runbook": "none, test only", "tags": ["exfiltration"]}
# rules that fire often and reach every executor path: dynamic conditions of every operator,
# counts and distinct counts, absence steps, step references, peers, term eviction
STRESS = [
    {"id": "F-M1", "kind": "match", "where": {"args_text": {"regex": "(?i)(select|make|src/)"}}, "group_window": "1m"},
    {"id": "F-M2", "kind": "match", "context": ["scope_checked", "args.path"], "group_window": "30s",
     "where": {"any": [{"args.path": {"glob": "*/src/*"}},
                       {"tool": {"in": ["fetch", "send_email"]}, "not": {"decision": "deny"}}],
               "result_bytes": {"gte": 2000}}},
    {"id": "F-M3", "kind": "match", "dedup_by": ["principal"], "group_window": "5m", "suppress_for": "10m",
     "where": {"any": [{"dest.external": True}, {"url.host": {"glob": ["*.org", "*.io"]}},
                       {"dest.values": {"contains": "acme"}}]}},
    {"id": "F-M4", "kind": "match", "where": {"latency_ms": {"lt": 80, "gt": 2}, "labels.k": {"exists": False}, "redacted": False,
                                               "hour": {"in": [1, 2, 3, 13, 14]}, "dest.external": False}},
    {"id": "F-T1", "kind": "threshold", "where": {"cap": "reads_private"}, "group_by": ["principal"],
     "threshold": {"window": "2m", "gte": 4}, "group_window": "2m"},
    {"id": "F-T2", "kind": "threshold", "where": {"decision": "allow"}, "group_by": ["session"],
     "threshold": {"window": "5m", "gte": 3, "distinct": "tool"}, "group_window": "1m"},
    {"id": "F-S1", "kind": "sequence", "group_by": ["session"], "maxspan": "10m", "group_window": "2m",
     "steps": [{"name": "a", "where": {"cap": "reads_private"}}, {"name": "gap", "absent": True, "where": {"tool": "edit_file"}},
               {"name": "b", "where": {"any": [{"cap": "writes_external"}, {"tool": {"glob": "*write*"}}]}}]},
    {"id": "F-S2", "kind": "sequence", "group_by": ["principal"], "maxspan": "30m", "group_window": "1m",
     "steps": [{"name": "a", "where": {"tool": {"in": ["read_file", "fetch", "query"]}}},
               {"name": "b", "where": {"args_text": {"contains_ref": "a.args.path"}, "tool": {"ne": "list_directory"}}},
               {"name": "c", "where": {"server": {"ref": "a.server"}}}]},
    {"id": "F-S3", "kind": "sequence", "group_by": ["session"], "maxspan": "5m", "group_window": "10s",
     "steps": [{"name": "pre", "absent": True, "within": "2m", "where": {"cap": "approval"}},
               {"name": "x", "where": {"decision": "deny"}}]},
    {"id": "F-N1", "kind": "new_term",
     "new_term": {"fields": ["principal", "tool"], "history_by": ["principal"], "learning": "2h"}},
    {"id": "F-N2", "kind": "new_term", "where": {"decision": "allow"},
     "new_term": {"fields": ["principal", "server", "tool"], "history_by": ["principal"], "learning": "30m",
                  "unless_known": ["tool"], "unless_min_groups": 2}},
    {"id": "F-N3", "kind": "new_term", "new_term": {"fields": ["server", "tool", "principal"], "history_by": ["server"],
                                                      "max_terms": 3}},  # evicts all the time
]


def stress_rules():
    return [compile_rule(RuleSpec.model_validate({**_BASE, "title": f"stress {s['id']}", **s})) for s in STRESS]


class ReferenceEngine(DetectionEngine):
    """Every candidate step with its whole condition, through the generic on_event."""

    def _build_dispatch(self, key, ti):
        srec = {"server": key[0], "tool": key[1], "decision": key[2], "result": key[3],
                "redactions": None if key[4] else {"?": 1}}
        sc = Ctx(srec, 0.0, ti, key[5], None)
        out = []
        for ex in self.execs:
            steps = sorted(((i, node, True) for i, node in ex.dispatch_steps() if node.tri(sc) is not False),
                           key=lambda x: -x[0])
            if steps:
                out.append(Executor.bind(ex, steps, self._emit))
        return out


def run(cls, rules, records, batch, stats=False):
    matches = []

    def on_match(m, aid):
        matches.append((m.meta.rule_id, m.ts, m.dedup, [r.get("event_id") for r in m.evidence],
                        orjson.dumps(m.context, option=orjson.OPT_SORT_KEYS, default=str), aid))

    eng = cls(rules, Catalog.load([DEMO_CATALOG]), AlertStore(None), on_match=on_match,
              detectors=default_detectors(STATS) if stats else [])
    for i in range(0, len(records), batch):
        eng.process(records[i:i + batch])
    eng.flush()
    return matches, {a.alert_id: a.content_key() for a in eng.store.alerts()}


def test_builtin_rules_and_detectors_same_as_reference(small_records):
    fast = run(DetectionEngine, load_rules(), small_records, 2000, stats=True)
    ref = run(ReferenceEngine, load_rules(), small_records, BATCH_TS_MIN - 1, stats=True)
    assert len(fast[1]) >= 15
    assert fast == ref


def test_stress_rules_same_as_reference(small_records):
    records = small_records[:8000]
    fast = run(DetectionEngine, stress_rules(), records, 1500)
    ref = run(ReferenceEngine, stress_rules(), records, BATCH_TS_MIN - 1)
    assert {m[0] for m in fast[0]} >= {s["id"] for s in STRESS} - {"F-N2"}
    assert len(fast[0]) > 1000
    assert fast == ref


def test_batch_timestamps_equal_ts_epoch():
    rng = random.Random(7)
    values = [f"{rng.randint(1, 9999):04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:"
              f"{rng.randint(0, 59):02d}:{rng.randint(0, 60):02d}.{rng.randint(0, 999999):06d}Z" for _ in range(20_000)]
    odd = ["2026-02-29T00:00:00.000000Z", "2024-02-29T23:59:59.999999Z", "2026-13-01T00:00:00.000000Z",
           "2026-03-02T24:00:00.000000Z", "2026-03-02T00:75:02.674831Z", "2026-03-02T00:00:+5.000000Z",
           "2026-03-02 00:00:02.674831Z", "2026-03-02T00:00:02.674831", "2026-03-02T00:00:02.67483Z", "", "x" * 27,
           "2026-03-02T00:00:02.674831Z!", "２026-03-02T00:00:02.674831Z", "2026-03-02T10:00:00Z", "0000-01-01T00:00:00.000000Z"]
    for vals in (values, values[:100] + odd + values[100:200], values[:50] + [None, 5] + values[50:99]):
        for v, got in zip(vals, batch_epochs(vals), strict=True):
            if got is not None:  # None: the caller parses it with ts_epoch (also for the odd forms)
                assert got == ts_epoch(v), v
    assert batch_epochs(values) == [ts_epoch(v) for v in values]


def test_evict_heap_matches_a_full_scan():
    meta = [RuleMeta(f"R{i}", 1, "t", "low", ("exfiltration",), "d", "r", "match", gw, sf)
            for i, (gw, sf) in enumerate([(60.0, 0.0), (3600.0, 30 * 86400.0), (10.0, 600.0)])]
    rng = random.Random(3)
    a, b = AlertStore(None), AlertStore(None)
    t = 0.0
    for step in range(3000):
        t += rng.expovariate(1 / 900)
        m = Match(rng.choice(meta), t - rng.random() * 3600, f"k{rng.randrange(300)}",
                  [{"event_id": f"e{step}", "ts": "2026-03-02T00:00:00.000000Z"}])
        assert a.add_match(m) == b.add_match(m)
        if step % 7 == 0:
            a.settle()
            b.settle()
        if step % 13 == 0:
            expired = [aid for aid, s in b.by_id.items() if aid not in b.dirty
                       and s.last_seen + max(s.meta.group_window, s.meta.suppress_for, 7 * 86400.0) < t]
            assert a.evict(t) == len(expired)
            for aid in expired:  # the original full scan
                s = b.by_id.pop(aid)
                if b.by_key.get(s.dedup) is s:
                    del b.by_key[s.dedup]
                b.archived[aid] = s
            assert set(a.by_id) == set(b.by_id) and set(a.archived) == set(b.archived)
    assert len(a.archived) > 100
