"""The dashboard's reads against a real store (written through the Ingestor, alerts from the
detectors), saved-query binding, CSV export safety, empty and error states."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from dashboard import saved as S
from dashboard.actions import Actions
from dashboard.data import DashboardData, DataError
from dashboard.pages.overview import expected_band
from dashboard.pages.query import csv_safe
from dashboard.pages.timeline import build_view
from dashboard.timeutil import TimeRange, parse_dt, preset_range
from tests.dashboard.fakes import FakeQuery
from tests.dashboard.storegen import EXFIL_SESSION, config_for
from tooltrail.query import ReadOnlyQuery


@pytest.fixture(scope="module")
def data(built) -> DashboardData:
    return DashboardData(built.config, ReadOnlyQuery(built.config))


def test_overview_counts_match_the_store(data, built):
    tr = TimeRange(built.start - timedelta(minutes=1), built.end + timedelta(minutes=1))
    ov = data.overview(tr)
    assert ov["kpi"]["events"] == built.events
    assert sum(r["n"] for r in ov["series"]) == built.events
    assert {r["decision"] for r in ov["series"]} <= {"allow", "deny"}
    assert 0 < len(ov["top"]["principal"]) <= 10 and ov["top"]["tool"] and ov["top"]["server"]
    assert ov["top"]["principal"] == sorted(ov["top"]["principal"], key=lambda r: -r["n"])
    top = ov["top"]["principal"][0]["name"]
    vol = data.principal_volume(tr, top)
    assert sum(r["n"] for r in vol) == ov["top"]["principal"][0]["n"]


def test_alert_list_filters_sorts_and_pages(data, built):
    rows, total = data.alerts({}, [{"column_id": "severity", "direction": "desc"}], 0, 2)
    assert total == len(built.alerts) and len(rows) == min(2, total)
    exfil, n = data.alerts({"rule_id": "TT-EXFIL-001"}, None, 0, 25)
    assert n == 1 and exfil[0]["alert_id"] == built.exfil_alert_id and exfil[0]["session"] == EXFIL_SESSION
    assert data.alerts({"text": "exfiltration"}, None, 0, 25)[1] >= 1
    assert data.alerts({"status": ["resolved"]}, None, 0, 25)[1] == 0
    assert data.alerts({"severity": ["high"], "principal": "mallory"}, None, 0, 25)[1] >= 1
    alert = data.alert(built.exfil_alert_id)
    events = data.events_by_ref(__import__("json").loads(alert["evidence"]))
    assert [e["tool"] for e in events] == ["read_file", "send_email"]


def test_timeline_of_the_exfiltration_session(data, built):
    alert = data.alert(built.exfil_alert_id)
    tr = TimeRange(alert["first_seen"] - timedelta(minutes=15), alert["last_seen"] + timedelta(minutes=15))
    events = data.timeline(tr, EXFIL_SESSION, None, 100)
    assert [e["tool"] for e in events] == ["read_email", "read_file", "send_email"]
    overlapping = data.alerts_overlapping(tr, EXFIL_SESSION, None)
    fig, rows, summary = build_view(events, overlapping, built.exfil_alert_id)
    assert summary["focus"] == 2 and [r["lane"] for r in rows if r["focus"]] == ["filesystem/read_file",
                                                                                 "gmail/send_email"]
    assert any(t["name"].startswith("\u2605") for t in fig["data"]) and fig["layout"]["shapes"]
    e = data.event(rows[-1]["chain_id"], rows[-1]["seq"], rows[-1]["ts"])
    assert e["event_id"] == events[-1]["event_id"] and "drop@evil-mail.net" in e["record"]


def test_inclusion_proof_and_evidence_bundle(data, built):
    from ingest.proofs import verify_bundle

    acts = Actions(built.config)
    row = data.event(built.exfil_events[-1]["chain_id"], built.exfil_events[-1]["seq"])
    proof = acts.event_proof(row)
    assert proof["verified"], proof
    assert proof["index"] == row["seq"] and proof["checkpoint"]["size"] > row["seq"]
    tr = TimeRange(built.end - timedelta(hours=1), built.end + timedelta(minutes=1))
    name, text = acts.evidence_bundle(data, tr, EXFIL_SESSION, None, "tester")
    import json

    bundle = json.loads(text)
    assert name.startswith(f"evidence-{EXFIL_SESSION}") and verify_bundle(bundle).ok
    assert bundle["meta"]["exported_by"] == "tester" and len(bundle["events"]) == 3
    # one changed byte in a record and the bundle no longer verifies
    bundle["events"][0]["record"] = bundle["events"][0]["record"].replace("mallory", "mallorx")
    assert not verify_bundle(bundle).ok


def test_integrity_reads(data, built):
    stats = data.chain_stats()
    assert stats[0]["chain_id"] == "local" and stats[0]["events"] == built.events
    cps = data.latest_checkpoints()
    assert cps and cps[0]["size"] == built.events
    total, reasons = data.quarantine_summary()
    assert total == 3 and {r["source"] for r in reasons} == {"gw-legacy"}
    assert {r["field"] for r in reasons} >= {"principal", "decision"}


def test_verify_job_reports_progress_and_result(built):
    acts = Actions(built.config)
    assert acts.start_verify("tester")
    assert not acts.start_verify("tester")  # one run at a time
    import time

    for _ in range(200):
        if not acts.verify_job.running:
            break
        time.sleep(0.05)
    job = acts.last_verify()
    assert job["ok"] is True and job["done"] == job["total"] == built.events
    assert job["report"]["chains"][0]["chain_id"] == "local"
    assert Actions(built.config).last_verify()["ok"] is True  # survives a restart


def test_empty_store_and_failing_reads(tmp_path):
    cfg = config_for(tmp_path / "empty")
    cfg.layout.ensure()
    d = DashboardData(cfg)
    ov = d.overview(preset_range("24h"))
    assert ov["kpi"]["events"] == 0 and ov["series"] == []
    assert d.alerts({}, None, 0, 10) == ([], 0)
    assert d.quarantine_summary() == (0, [])
    bad = DashboardData(cfg, FakeQuery(fail="Catalog Error: Table with name events does not exist!"))
    with pytest.raises(DataError, match="no such data"):
        bad.overview(preset_range("1h"))
    slow = DashboardData(cfg, FakeQuery(fail="query interrupted after 10s timeout"))
    with pytest.raises(DataError, match="Narrow the time range"):
        slow.alerts({}, None, 0, 10)


def test_saved_queries_bind_parameters_safely():
    qs = S.load_all()
    assert {"session_events", "denied_calls", "open_alerts"} <= set(qs)
    q = qs["principal_tools"]
    sql, params = S.bind(q.sql, {"principal": "a'; drop table x; --", "since": "now-24h"}, q.params)
    assert "$" not in sql and "drop table" not in sql and params[0] == "a'; drop table x; --"
    assert isinstance(params[1], datetime) and params[1] < datetime.now(UTC)
    sql, params = S.bind("select '$keep' as s, $n as n", {"n": "5"}, [S.Param("n", "int")])
    assert sql == "select '$keep' as s, ? as n" and params == [5]
    with pytest.raises(ValueError, match="needs a value"):
        S.bind("select $x", {}, [S.Param("x")])
    with pytest.raises(ValueError, match="whole number"):
        S.bind("select $x", {"x": "abc"}, [S.Param("x", "int")])


def test_csv_export_neutralises_formulas():
    t = pa.table({"a": ["=HYPERLINK(\"http://x\")", "ok", None, "-1+2"], "n": [1, 2, 3, 4]})
    out = csv_safe(t).column("a").to_pylist()
    assert out == ["'=HYPERLINK(\"http://x\")", "ok", None, "'-1+2"]


def test_expected_band_flags_a_spike_only():
    counts = [10, 12, 9, 11, 10, 13, 10, 11, 9, 10, 80, 10, 11]
    band = expected_band(counts)
    outside = [i for i, (c, b) in enumerate(zip(counts, band, strict=True)) if c > b[2]]
    assert outside == [10]


def test_time_parsing():
    assert parse_dt("2026-05-29T11:04:22Z") == datetime(2026, 5, 29, 11, 4, 22, tzinfo=UTC)
    assert parse_dt("2026-05-29 11:04") == datetime(2026, 5, 29, 11, 4, tzinfo=UTC)
    assert abs((parse_dt("now-2h") - (datetime.now(UTC) - timedelta(hours=2))).total_seconds()) < 5
    assert parse_dt("garbage") is None


def test_stale_while_revalidate_cache(tmp_path):
    import threading
    import time

    d = DashboardData(config_for(tmp_path / "c"), FakeQuery())
    calls = []
    gate = threading.Event()

    def fn():
        calls.append(1)
        if len(calls) > 1:
            gate.wait(5)
        return len(calls)

    assert d.cached(("k",), 0.05, fn, stale=10) == 1
    time.sleep(0.1)
    assert d.cached(("k",), 0.05, fn, stale=10) == 1  # stale value at once, refresh in the background
    gate.set()
    for _ in range(100):
        if d._cache[("k",)][1] == 2:
            break
        time.sleep(0.02)
    assert d.cached(("k",), 10, fn) == 2 and len(calls) == 2
