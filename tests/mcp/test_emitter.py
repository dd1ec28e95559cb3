"""The emitter and its spool: durable, bounded, never blocking, nothing lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import orjson
import pytest

from ingest.emitter import Emitter, HttpSink, MemorySpool, Outcome, Spool, SpoolBusy, open_emitter
from ingest.mcp.events import build_event
from tests.mcp.conftest import ROOT, TOKEN, StubCollector


def ev(i: int, **kw) -> dict:
    return build_event(ts=time.time(), principal=f"p{i % 3}", session="s1", tool="echo", args={"i": i},
                       decision="allow", result="ok", latency_ms=1.5, **kw)


class ListSink:
    name = "list"

    def __init__(self, fail: int = 0, outcome: Outcome | None = None) -> None:
        self.got: list[bytes] = []
        self.calls = 0
        self.fail = fail
        self.outcome = outcome

    def send(self, lines):
        self.calls += 1
        if self.fail:
            self.fail -= 1
            return Outcome(False, error="down")
        if self.outcome is not None:
            o, self.outcome = self.outcome, None
            return o
        self.got.extend(lines)
        return Outcome(True, stored=len(lines))

    def close(self):
        pass


def test_spool_append_read_commit_and_permissions(tmp_path):
    sp = Spool(tmp_path / "s", segment_bytes=50)
    for i in range(20):
        assert sp.append(orjson.dumps({"i": i}))
    assert (os.stat(tmp_path / "s").st_mode & 0o777) == 0o700
    segs = list((tmp_path / "s").glob("seg-*.jsonl"))
    assert len(segs) > 1 and all((os.stat(p).st_mode & 0o777) == 0o600 for p in segs)
    got = []
    while True:
        b = sp.read(7)
        if not b.lines:
            break
        got += [orjson.loads(x)["i"] for x in b.lines]
        sp.commit(b.end)
    assert got == list(range(20))
    assert sp.drained()
    assert len(list((tmp_path / "s").glob("seg-*.jsonl"))) == 1  # delivered segments deleted
    sp.close()


def test_spool_cursor_survives_reopen(tmp_path):
    sp = Spool(tmp_path / "s")
    for i in range(10):
        sp.append(orjson.dumps({"i": i}))
    b = sp.read(4)
    sp.commit(b.end)
    sp.close()
    sp2 = Spool(tmp_path / "s")
    b = sp2.read(100)
    assert [orjson.loads(x)["i"] for x in b.lines] == list(range(4, 10))
    sp2.close()


def test_spool_is_owned_by_one_process(tmp_path):
    sp = Spool(tmp_path / "s")
    with pytest.raises(SpoolBusy):
        Spool(tmp_path / "s")
    other = Spool.open_unique(tmp_path, "s")
    assert other.dir.name == "s.1"
    other.close()
    sp.close()


def test_torn_tail_is_set_aside_not_delivered(tmp_path):
    d = tmp_path / "s"
    sp = Spool(d)
    sp.append(orjson.dumps({"i": 1}))
    sp.close()
    with open(d / "seg-0000000001.jsonl", "ab") as fh:
        fh.write(b'{"i": 2, "trunc')  # a write torn by a crash
    sink = ListSink()
    em = Emitter(sink, Spool(d), flush_interval_s=0.02)
    em.emit({"i": 3})
    assert em.flush(5)
    em.close()
    assert [orjson.loads(x)["i"] for x in sink.got] == [1, 3]
    assert b"trunc" in (d / "rejected.jsonl").read_bytes()


def test_emit_survives_process_kill(tmp_path):
    """Events emitted before a SIGKILL are in the spool (write(2) before emit returns)."""
    code = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from ingest.emitter import Emitter, Spool
        em = Emitter(None, Spool({str(tmp_path / 's')!r}))
        for i in range(500):
            em.emit({{"event_id": f"e{{i}}", "i": i}})
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    r = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert r.returncode == -signal.SIGKILL
    sp = Spool(tmp_path / "s")
    b = sp.read(10_000, 10 << 20)
    assert [orjson.loads(x)["i"] for x in b.lines] == list(range(500))
    sp.close()


def test_emit_is_cheap_and_never_raises(tmp_path):
    sink = ListSink()
    em = Emitter(sink, Spool(tmp_path / "s"))
    e = ev(1)
    t0 = time.perf_counter()
    for _ in range(2000):
        em.emit(e)
    per_call_us = (time.perf_counter() - t0) / 2000 * 1e6
    assert per_call_us < 200  # generous bound for a shared CI core; ~2 us typical
    assert em.emit({"bad": object()}) is False  # not JSON: counted, not raised
    assert em.flush(10)
    em.close()
    assert len(sink.got) == 2000


def test_retry_with_backoff_until_sink_recovers(tmp_path):
    sink = ListSink(fail=3)
    em = Emitter(sink, Spool(tmp_path / "s"), flush_interval_s=0.02, max_backoff_s=0.2)
    for i in range(10):
        em.emit(ev(i))
    assert em.flush(15)
    em.close()
    assert len(sink.got) == 10 and em.stats.send_failures == 3


def test_split_and_refuse(tmp_path):
    # the collector refuses the whole batch (413): retried in halves
    sink = ListSink(outcome=Outcome(False, split=True))
    em = Emitter(sink, Spool(tmp_path / "s"), flush_interval_s=0.02)
    for i in range(8):
        em.emit(ev(i))
    assert em.flush(10)
    em.close()
    assert len(sink.got) == 8

    sink = ListSink(outcome=Outcome(False, refused="HTTP 400: bad"))
    em = Emitter(sink, Spool(tmp_path / "t"), flush_interval_s=0.02, batch_items=1)
    for i in range(3):
        em.emit(ev(i))
    assert em.flush(10)
    em.close()
    assert len(sink.got) == 2 and em.stats.refused == 1
    assert b"HTTP 400" in (tmp_path / "t" / "rejected.jsonl").read_bytes()


def test_memory_spool_is_bounded():
    sink = ListSink(fail=10**6)
    em = Emitter(sink, MemorySpool(max_items=5), flush_interval_s=0.02, max_backoff_s=0.05)
    results = [em.emit(ev(i)) for i in range(8)]
    assert results == [True] * 5 + [False] * 3 and em.stats.dropped == 3
    em._stop.set()


def test_spool_is_bounded_and_drops_loudly(tmp_path):
    em = Emitter(None, Spool(tmp_path / "s", max_bytes=2000))
    ok = [em.emit(ev(i)) for i in range(50)]
    assert not all(ok) and em.stats.dropped > 0
    em.close()


def test_http_sink_against_collector_contract(tmp_path):
    coll = StubCollector().start()
    try:
        sink = HttpSink(coll.url, TOKEN)
        lines = [orjson.dumps(ev(i)) for i in range(3)]
        out = sink.send(lines)
        assert out.delivered and out.stored == 3
        out = sink.send(lines)  # idempotent retry
        assert out.delivered and out.duplicates == 3
        big = [orjson.dumps(ev(i, labels={"pad": "x" * 900})) for i in range(40)]  # > gzip threshold
        assert sink.send(big).stored == 40
        bad = orjson.dumps({"event_id": "x1", "tool": "t"})
        out = sink.send([bad])
        assert out.delivered and out.rejected == 1  # quarantined by the collector
        coll.fail_with = (503, {"Retry-After": "2"})
        out = sink.send(lines)
        assert not out.delivered and out.retry_after == 2.0
        coll.fail_with = None
        coll.max_items = 1
        assert sink.send(lines).split
        assert not HttpSink(coll.url, "wrong").send(lines).delivered  # 401: kept, retried later
        sink.close()
    finally:
        coll.stop()


def test_orphan_spool_is_adopted(tmp_path):
    root = tmp_path / "spool"
    orphan = Spool(root / "dead-proxy")
    for i in range(4):
        orphan.append(orjson.dumps(ev(i)))
    orphan.close()  # its process is gone: the lock is free
    sink = ListSink()
    em = Emitter(sink, Spool.open_unique(root, "live"), flush_interval_s=0.02, adopt_root=root, adopt_interval_s=0.1)
    deadline = time.time() + 10
    while len(sink.got) < 4 and time.time() < deadline:
        time.sleep(0.05)
    em.close()
    assert len(sink.got) == 4
    assert not (root / "dead-proxy").exists()


def test_open_emitter_requires_a_destination(tmp_path):
    with pytest.raises(ValueError, match="no destination"):
        open_emitter(spool_dir=tmp_path)
