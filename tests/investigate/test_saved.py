"""The saved-query loader: file format, parameter binding, sources."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tooltrail.saved import SavedQueryError, bind, list_saved, load_saved, parse, parse_time, prepare


def test_parse_header_and_undeclared_params():
    q = parse("x", "-- title: T\n-- description: one\n-- description: two\n-- param: a int 5\n\n"
                   "select $a, $b, '$c' as lit from events;\n")
    assert q.title == "T" and q.description == "one two"
    assert [(p.name, p.type, p.default, p.required) for p in q.params] == [("a", "int", "5", False), ("b", "text", "", True)]
    assert q.sql.endswith("from events")


def test_bind_keeps_literals_and_uses_defaults_and_types():
    q = parse("x", "-- param: n int 3\n-- param: t ts now-1h\nselect * from events where seq < $n and ts > $t "
                   "and tool <> 'it''s $n' and principal = $n::varchar")
    sql, vals = bind(q.sql, {}, q.params)
    assert sql.count("?") == 3 and "'it''s $n'" in sql
    assert vals[0] == 3 and vals[2] == 3
    assert abs((datetime.now(UTC) - timedelta(hours=1) - vals[1]).total_seconds()) < 5
    with pytest.raises(SavedQueryError, match="whole number"):
        prepare(q, {"n": "many"})
    with pytest.raises(SavedQueryError, match="no parameter"):
        prepare(q, {"zzz": "1"})


def test_parse_time_forms():
    now = datetime(2026, 5, 29, 12, tzinfo=UTC)
    assert parse_time("2026-05-29T11:04:22Z") == datetime(2026, 5, 29, 11, 4, 22, tzinfo=UTC)
    assert parse_time("2026-05-29") == datetime(2026, 5, 29, tzinfo=UTC)
    assert parse_time("now-2h", now) == now - timedelta(hours=2)
    assert parse_time("24h", now) == now - timedelta(hours=24)
    assert parse_time("-30m", now) == now - timedelta(minutes=30)
    assert parse_time("now", now) == now
    with pytest.raises(ValueError, match="not a time"):
        parse_time("last tuesday")


def test_sources_and_override(tmp_path):
    builtin = {q.name for q in list_saved()}
    assert {"alert_evidence", "principal_timeline", "tool_callers"} <= builtin
    (tmp_path / "queries").mkdir()
    (tmp_path / "queries" / "tool_callers.sql").write_text("-- title: Mine\nselect 1")
    (tmp_path / "queries" / "Bad Name.sql").write_text("select 1")
    q = load_saved("tool_callers", tmp_path)
    assert q.title == "Mine" and q.origin == "user"
    assert load_saved("tool_callers").origin == "built-in"
    assert "Bad Name" not in {q.name for q in list_saved(tmp_path)}
    with pytest.raises(SavedQueryError, match="invalid"):
        load_saved("../etc/passwd", tmp_path)


def test_dashboard_hook_finds_the_shared_loader():
    from tooltrail import saved_queries

    assert {q.name for q in saved_queries.list_saved()} == {q.name for q in list_saved()}
