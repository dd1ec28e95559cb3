"""The fast backtest (vectorised segment replay, N processes partitioned by principal) gives
exactly the alerts of the one-process replay of follow.backtest, also when chains interleave,
principals and sessions are spread over chains and event time goes backwards between chains."""

from __future__ import annotations

import pytest

from detect.alerts import AlertStore
from detect.backtest import EngineSpec, plan, rule_scope, run_backtest
from detect.catalog import Catalog
from detect.engine import DetectionEngine
from detect.follow import backtest
from detect.rules import load_rules
from detect.stats import StatsSettings
from detect.traffic import DEMO_CATALOG

SPEC = EngineSpec(catalog_files=(str(DEMO_CATALOG),))
# Rules that fire often and whose state depends on sweeps (short windows, absence steps) and on
# other principals (new_term without principal in the history / with peers).
_TESTS = """
tests:
  - {name: pos, alerts: 1, events: [{tool: x}]}
  - {name: neg, alerts: 0, events: []}
"""
STRESS = {
    "thr.yaml": "kind: threshold\nwhere: {cap: reads_private}\ngroup_by: [principal]\n"
                "threshold: {window: 2m, gte: 4}\ngroup_window: 2m\n",
    "thr_distinct.yaml": "kind: threshold\ngroup_by: [session]\nthreshold: {window: 5m, gte: 3, distinct: tool}\n",
    "seq.yaml": "kind: sequence\ngroup_by: [session]\nmaxspan: 10m\ngroup_window: 2m\nsteps:\n"
                "  - {name: a, where: {cap: reads_private}}\n  - {name: gap, absent: true, where: {tool: edit_file}}\n"
                "  - {name: b, where: {any: [{cap: writes_external}, {tool: {glob: '*write*'}}]}}\n",
    "seq_ref.yaml": "kind: sequence\ngroup_by: [principal]\nmaxspan: 30m\ngroup_window: 1m\nsteps:\n"
                    "  - {name: a, where: {tool: {in: [read_file, fetch, query]}}}\n"
                    "  - {name: b, where: {server: {ref: a.server}, tool: {ne: list_directory}}}\n",
    "nt_peers.yaml": "kind: new_term\nwhere: {decision: allow}\nnew_term: {fields: [principal, server, tool], "
                     "history_by: [principal], learning: 30m, unless_known: [tool], unless_min_groups: 2}\n",
    "nt_global.yaml": "kind: new_term\nnew_term: {fields: [tool, scope_checked], history_by: [tool], require_history: true}\n",
}


@pytest.fixture(scope="module")
def stress_spec(tmp_path_factory):
    d = tmp_path_factory.mktemp("rules")
    for i, (name, body) in enumerate(STRESS.items()):
        head = f"id: S-{i}\ntitle: stress {name}\nseverity: low\ntags: [exfiltration]\n"
        (d / name).write_text(head + "description: equivalence stress rule\nrunbook: none, test only\n" + body + _TESTS)
    return EngineSpec(rule_dirs=(str(d),), catalog_files=(str(DEMO_CATALOG),))


def content(alerts):
    return [a.content_key() for a in alerts]


@pytest.fixture(scope="module")
def store(tmp_path_factory, small_traffic):
    """~8.6k events in 2 chains, 3 segments each; batches are submitted pairwise swapped, so
    the merged order goes back in event time at every other batch."""
    from ingest.pipeline import Ingestor
    from tooltrail.config import load_config

    cfg = load_config(data_dir=str(tmp_path_factory.mktemp("bt") / "data"), env={})
    events = [x.event for x in small_traffic if x.event is not None][:10_000]
    batches = [events[i:i + 400] for i in range(0, len(events), 400)]
    order = [j for i in range(0, len(batches), 2) for j in (i + 1, i) if j < len(batches)]
    for part in range(3):  # closing seals a segment
        ings = {c: Ingestor.open(cfg, chain_id=c) for c in ("bt-a", "bt-b")}
        for k, j in enumerate(order):
            if k % 3 == part:
                res = ings["bt-a" if j % 2 else "bt-b"].submit(batches[j], source=f"gw-{j % 3}")
                assert res.stored == len(batches[j])
        for ing in ings.values():
            ing.close()
    return cfg


def reference(cfg, spec=SPEC, **kw):
    eng = DetectionEngine(spec.rules(), Catalog.load([DEMO_CATALOG]), AlertStore(None))
    return backtest(cfg.layout, eng, **kw)


def test_one_process_replay_matches_follow_backtest(store):
    ref = reference(store)
    assert len(ref.alerts) >= 10
    rep = run_backtest(store.layout, SPEC, workers=1)
    assert rep.events == ref.events > 8000
    assert content(rep.alerts) == content(ref.alerts)


def test_partitioned_backtest_matches_one_process(store):
    ref = reference(store)
    seen = []
    rep = run_backtest(store.layout, SPEC, workers=2, progress=lambda n, total: seen.append((n, total)))
    assert rep.workers == 2 and rep.note == ""
    assert rep.events == ref.events
    assert content(rep.alerts) == content(ref.alerts)
    assert {a.rule_id for a in rep.alerts} >= {"TT-SUPPLY-001", "TT-SUPPLY-002"}  # first-sight rules take part
    assert seen and seen[-1][1] == ref.events


def test_partitioned_backtest_with_sweep_sensitive_rules(store, stress_spec):
    ref = reference(store, stress_spec)
    assert len(ref.alerts) > 1000
    rep = run_backtest(store.layout, stress_spec, workers=2)
    assert rep.note == ""
    assert content(rep.alerts) == content(ref.alerts)
    assert content(run_backtest(store.layout, stress_spec, workers=1).alerts) == content(ref.alerts)


def test_time_range(store):
    kw = {"since": "2026-03-03T00:00:00Z", "until": "2026-03-04T06:00:00Z"}
    ref = reference(store, **kw)
    assert 1000 < ref.events < 7000
    rep = run_backtest(store.layout, SPEC, workers=2, **kw)
    assert (rep.events, content(rep.alerts)) == (ref.events, content(ref.alerts))


def test_rule_scopes_and_fallbacks():
    scopes = {r.id: rule_scope(r) for r in load_rules()}
    assert scopes["TT-SUPPLY-001"] == scopes["TT-SUPPLY-002"] == "first_sight"
    assert scopes["TT-EXFIL-001"] == scopes["TT-AUTHZ-002"] == scopes["TT-SUPPLY-003"] == "local"
    assert plan(SPEC, 2)[2] == ""
    assert "statistical" in plan(EngineSpec(stats=StatsSettings()), 2)[2]


def test_cli_backtest_workers_agree(store, capsys):
    import json

    from tooltrail.cli import main

    def run(*extra):
        assert main(["--data-dir", str(store.data_dir), "backtest", "--no-stats", "--no-progress", *extra]) == 0
        return capsys.readouterr().out

    out = run("--workers", "2")
    assert "events in" in out and "2 processes" in out and "| day " in out
    wall = ("created_at", "updated_at", "history", "status")

    def alerts(workers):
        return [{k: v for k, v in json.loads(line).items() if k not in wall}
                for line in run("--json", "--workers", workers).splitlines()]

    one = alerts("1")
    assert one == alerts("2") and len(one) > 10
