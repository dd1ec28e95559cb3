"""The write path end to end on real files: store, dedupe, quarantine, query, listeners,
WAL replay, proofs."""

from __future__ import annotations

import time

import orjson
import pytest

from ingest.pipeline import ChainBusyError, Ingestor
from ingest.proofs import prove, verify_bundle
from ingest.verify import verify
from tests.conftest import SEED_EVENT, make_event
from tooltrail.query import QueryError, ReadOnlyQuery


def test_submit_dedupes_and_quarantines_with_reasons(config):
    with Ingestor.open(config, "t", direct=True) as ing:
        res = ing.submit([orjson.dumps(SEED_EVENT), b"{not json", {**SEED_EVENT, "decision": "maybe"},
                          orjson.dumps(SEED_EVENT), "[1,2]"], source="gw")
        assert (res.stored, res.duplicates) == (1, 1)
        assert [(r.index, r.field) for r in res.rejected] == [(1, "(event)"), (2, "decision"), (4, "(event)")]
        assert "invalid JSON" in res.rejected[0].reason and "line 1" in res.rejected[0].reason
        again = ing.submit([SEED_EVENT], source="gw")  # content-derived id: a retry is a duplicate
        assert (again.stored, again.duplicates) == (0, 1)
    q = ReadOnlyQuery(config)
    rows = q.rows("select principal, source, decision, args, seq, chain_id from events")
    assert rows == [{"principal": "user_8842", "source": "gw", "decision": "allow", "args": '{"customer_id":5512}',
                     "seq": 0, "chain_id": "t"}]
    qrows = q.rows("select source, reasons, raw from quarantine order by raw")
    assert len(qrows) == 3 and all(r["source"] == "gw" for r in qrows)
    assert any("decision" in r["reasons"] for r in qrows)


def test_source_comes_from_the_collector_not_the_payload(config):
    with Ingestor.open(config, "t", direct=True) as ing:
        res = ing.submit([{**SEED_EVENT, "source": "spoofed"}], source="gw")
        assert res.stored == 0 and res.rejected[0].field == "source"


def test_one_writer_per_chain(config):
    with Ingestor.open(config, "t", direct=True), pytest.raises(ChainBusyError):
        Ingestor.open(config, "t", direct=True)


def test_wal_mode_is_queryable_within_two_seconds_and_listeners_see_every_event_in_order(config):
    seen: list[int] = []
    ing = Ingestor.open(config, "w")
    ing.add_listener(lambda recs: seen.extend(r["seq"] for r in recs))
    try:
        for b in range(5):
            ing.submit([make_event(b * 100 + i) for i in range(100)], source="gw")
        t0 = time.monotonic()
        q = ReadOnlyQuery(config)
        while q.scalar("select count(*) from events") != 500:
            assert time.monotonic() - t0 < 2.0, "accepted events not queryable within 2 s"
            time.sleep(0.05)
        deadline = time.monotonic() + 2
        while len(seen) < 500 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert seen == list(range(500))
    finally:
        ing.close()
    assert verify(config.layout, save=False).ok


def test_wal_replay_after_unclean_stop(config):
    config.storage.segment_max_seconds = 3600  # nothing seals on its own
    ing = Ingestor.open(config, "w")
    ing.submit([make_event(i) for i in range(30)], source="gw")
    # Simulate a crash: drop the object without close(); release the lock as process death would.
    ing._stop.set()
    ing._sealer.join()
    ing._dispatcher.join()
    import fcntl
    import os

    fcntl.flock(ing._lock_fd, fcntl.LOCK_UN)
    os.close(ing._lock_fd)
    assert ReadOnlyQuery(config).scalar("select count(*) from events") == 0
    with Ingestor.open(config, "w") as again:
        assert again.size == 30
    assert ReadOnlyQuery(config).scalar("select count(*) from events") == 30
    assert verify(config.layout, save=False).ok


def test_proof_bundle_verifies_offline_and_one_changed_byte_fails(config):
    with Ingestor.open(config, "p", direct=True) as ing:
        ing.submit([make_event(i) for i in range(37)], source="gw")
    bundle = prove(config.layout, "ev-0000011")
    assert verify_bundle(bundle).ok
    ev = bundle["events"][0]
    ev["record"] = ev["record"].replace("ev-0000011", "ev-0000012")
    assert not verify_bundle(bundle).ok


def test_compaction_keeps_the_chain_verifiable(config):
    from ingest.compaction import compact_all

    config.storage.compact_min_segments = 3
    with Ingestor.open(config, "c", direct=True) as ing:
        for b in range(6):
            ing.submit([make_event(b * 10 + i) for i in range(10)], source="gw")
    assert compact_all(config) == {"c": 6}
    from ingest.segments import live_segments

    assert len(live_segments(config.layout, "c")) == 1
    rep = verify(config.layout, save=False)
    assert rep.ok and rep.events == 60 and not rep.warnings
    assert ReadOnlyQuery(config).scalar("select count(distinct event_id) from events") == 60


@pytest.mark.parametrize("sql", [
    "delete from events", "insert into events values (1)", "select 1; select 2",
    "copy (select 1) to 'x.csv'", "attach 'x.db'", "select * from read_csv('/etc/passwd')",
    "install httpfs", "select * from read_text('KEYS/signing.key')",
])
def test_query_layer_is_read_only(config, sql):
    with Ingestor.open(config, "t", direct=True) as ing:
        ing.submit([SEED_EVENT], source="gw")
    sql = sql.replace("KEYS", str(config.layout.keys))
    with pytest.raises(QueryError):
        ReadOnlyQuery(config).sql(sql)


def test_query_row_limit_and_timeout(config):
    q = ReadOnlyQuery(config)
    assert q.sql("select * from range(100000)", limit=10).num_rows == 10
    with pytest.raises(QueryError, match="timeout"):
        q.sql("select count(*) from range(1000000000) a, range(1000) b", timeout_s=0.5)
