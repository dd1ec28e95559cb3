from __future__ import annotations

import duckdb
import pytest

from detect.alerts import AlertStore, Match, RuleMeta, Suppression, alerts_view_sql
from detect.timeutil import epoch_ts

META = RuleMeta("R-1", 1, "A rule", "high", ("exfiltration",), "desc", "runbook", "match",
                group_window=600.0, suppress_for=3600.0)
T0 = 1772445600.0


def m(i: int, t: float, key: str = "R-1|principal=p") -> Match:
    rec = {"event_id": f"e{i}", "chain_id": "c", "seq": i, "hash": f"h{i}", "ts": epoch_ts(t), "principal": "p",
           "session": "s", "tool": "send_email", "server": "gmail"}
    return Match(META, t, key, [rec], {"i": i})


def test_grouping_suppression_and_new_alerts():
    st = AlertStore(None)
    a1 = st.add_match(m(1, T0))
    assert st.add_match(m(2, T0 + 300)) == a1  # grouped
    st.flush()
    st.set_status(a1, "resolved", "ann", "benign test")
    assert st.add_match(m(3, T0 + 400)) == a1  # resolved, inside suppress_for: counted only
    a = st.get(a1)
    assert (a.match_count, a.suppressed_count, a.status) == (2, 1, "resolved")
    assert [e.event_id for e in a.evidence] == ["e1", "e2"] and a.history[0].who == "ann"
    a2 = st.add_match(m(4, T0 + 4000))  # after the suppression window: a new alert
    assert a2 != a1
    assert st.add_match(m(5, T0 + 4000 + 700)) == a2  # beyond the group window, inside suppress_for
    assert st.get(a2).suppressed_count == 1
    assert st.add_match(m(6, T0 + 4000 + 3700)) not in (a1, a2)  # beyond both windows
    assert len(st) == 3


def test_suppression_list_counts_instead_of_raising():
    st = AlertStore(None, suppressions=[Suppression(rule="R-*", principal="p")])
    assert st.add_match(m(1, T0)) is None
    assert st.unattached_suppressed == {"R-1": 1}
    assert len(st) == 0


def test_alert_ids_are_deterministic():
    ids = []
    for _ in range(2):
        st = AlertStore(None)
        ids.append([st.add_match(m(i, T0 + i * 5000)) for i in range(3)])
    assert ids[0] == ids[1] and len(set(ids[0])) == 3


def test_files_view_and_lifecycle_across_processes(tmp_path):
    d = tmp_path / "alerts"
    owner = AlertStore(d)
    a1 = owner.add_match(m(1, T0))
    owner.add_match(m(2, T0 + 10))
    a2 = owner.add_match(m(3, T0, key="R-1|principal=q"))
    changes = owner.flush()
    assert {c.kind for c in changes} == {"created"}
    owner.add_match(m(4, T0 + 20))
    owner.flush()
    # the dashboard: another process, not the owner
    dash = AlertStore(d, owner=False)
    dash.set_status(a1, "acknowledged", "soc-ann", "looking")
    dash.set_status(a1, "resolved", "soc-bob", "false positive")
    with pytest.raises(KeyError):
        dash.set_status("al_nope", "resolved", "x")
    with pytest.raises(ValueError):
        dash.set_status(a1, "closed", "x")
    con = duckdb.connect()
    rows = con.sql(f"select alert_id, status, match_count, updated_by, note, principal, rule_id, severity, "
                   f"evidence, history, first_seen, last_seen from ({alerts_view_sql(d)}) order by alert_id").fetchall()
    by = {r[0]: r for r in rows}
    assert set(by) == {a1, a2}
    r = by[a1]
    assert r[1] == "resolved" and r[2] == 3 and r[3] == "soc-bob" and r[4] == "false positive"
    assert r[5] == "p" and r[6] == "R-1" and r[7] == "high"
    assert '"event_id":"e1"' in r[8].replace(" ", "") and '"soc-ann"' in r[9]
    assert by[a2][1] == "open" and by[a2][3] == "detector"
    # the owner learns the new status
    owner.poll_status()
    assert owner.get(a1).status == "resolved"
    # a torn last line (crash mid-append) does not break the view
    with open(next(d.glob("alerts-*.jsonl")), "ab") as fh:
        fh.write(b'{"alert_id": "al_x", "rule')
    assert con.sql(f"select count(*) from ({alerts_view_sql(d)})").fetchall()[0][0] == 2


def test_view_of_an_empty_store(tmp_path):
    con = duckdb.connect()
    assert con.sql(f"select count(*) from ({alerts_view_sql(tmp_path / 'none')})").fetchall()[0][0] == 0
    AlertStore(tmp_path / "a")
    cols = [c[0] for c in con.sql(f"describe ({alerts_view_sql(tmp_path / 'a')})").fetchall()]
    for c in ("alert_id", "rule_id", "title", "severity", "status", "principal", "session", "first_seen", "last_seen",
              "match_count", "suppressed_count", "evidence", "entities", "tags", "updated_at", "updated_by", "note"):
        assert c in cols
