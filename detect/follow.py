"""Drivers that feed stored events to the engine: the follower (tails the lake's sealed
Parquet segments per chain, in seq order, persisting progress with the engine state) and
the backtest (replays stored history into a fresh engine with an in-memory alert store).

Records come from `ingest.segments.iter_records(layout, chain_id, from_seq)`: the write
path's own reader of sealed segments (live segments only, so compaction never yields a
record twice).

Order across chains: records are merged by (received_at, chain_id, seq); within a chain seq
order is kept. Principals are partitioned onto chains (Kafka key), so every per-principal and
per-session state sees the same sequence live and in a backtest.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from detect.engine import DetectionEngine
from detect.timeutil import ts_epoch
from schemas.alert import Alert

Reader = Callable[[Any, str, int], Iterable[dict[str, Any]]]


def default_reader() -> Reader:
    from ingest.segments import iter_records

    return iter_records


def merged(layout: Any, reader: Reader, start: dict[str, int], chains: list[str]) -> Iterator[dict[str, Any]]:
    its = [reader(layout, c, start.get(c, 0)) for c in chains]
    return heapq.merge(*its, key=lambda r: (r.get("received_at", ""), r.get("chain_id", ""), r.get("seq", 0)))


class Follower:
    """Tails sealed segments and runs the engine (`tooltrail detect --follow`). The engine's
    per-chain progress is part of its saved state, so a restart continues where it stopped
    (records already processed are skipped: at-least-once delivery, exactly-once effect)."""

    def __init__(self, layout: Any, engine: DetectionEngine, *, reader: Reader | None = None,
                 chains: list[str] | None = None, batch: int = 10_000, save_every_s: float = 5.0,
                 on_alerts: Callable[[list[Alert]], None] | None = None) -> None:
        self.layout = layout
        self.engine = engine
        self.reader = reader or default_reader()
        self.chains = chains
        self.batch = batch
        self.save_every_s = save_every_s
        self.on_alerts = on_alerts
        self._last_save = time.monotonic()

    def poll(self) -> int:
        """Process every record sealed since the last poll. Returns how many."""
        chains = self.chains or self.layout.chain_ids()
        n = 0
        buf: list[dict[str, Any]] = []
        for rec in merged(self.layout, self.reader, dict(self.engine.progress), chains):
            buf.append(rec)
            if len(buf) >= self.batch:
                n += self._run(buf)
                buf = []
        if buf:
            n += self._run(buf)
        self.engine.flush()
        if n and time.monotonic() - self._last_save >= self.save_every_s:
            self.engine.save_state()
            self._last_save = time.monotonic()
        return n

    def _run(self, buf: list[dict[str, Any]]) -> int:
        alerts = self.engine.process(buf)
        if alerts and self.on_alerts:
            self.on_alerts(alerts)
        return len(buf)

    def run(self, stop: threading.Event | None = None, poll_s: float = 1.0) -> None:
        stop = stop or threading.Event()
        try:
            while not stop.is_set():
                if self.poll() == 0:
                    stop.wait(poll_s)
        finally:
            self.engine.flush()
            self.engine.save_state()


def catch_up(layout: Any, engine: DetectionEngine, reader: Reader | None = None) -> int:
    """In-process driver start-up: process what was stored after the last saved state (the
    listener then takes over for new batches)."""
    return Follower(layout, engine, reader=reader).poll()


@dataclass
class BacktestReport:
    events: int = 0
    seconds: float = 0.0
    alerts: list[Alert] = field(default_factory=list)
    per_day: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    workers: int = 1
    cpu_seconds: float = 0.0  # of the process(es) that ran detection
    note: str = ""  # why the run used one process, when more were asked for
    alert_count: int = 0

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def backtest(layout: Any, engine: DetectionEngine, *, since: str | None = None, until: str | None = None,
             reader: Reader | None = None, chains: list[str] | None = None, batch: int = 20_000,
             progress: Callable[[int], None] | None = None) -> BacktestReport:
    """Replay stored history [since, until) (event time) through `engine` (normally a fresh
    one with a memory store) and count the alerts it raises per day and rule."""
    reader = reader or default_reader()
    chains = chains or layout.chain_ids()
    lo = ts_epoch(since) if since else None
    hi = ts_epoch(until) if until else None
    rep = BacktestReport()
    t0 = time.perf_counter()
    buf: list[dict[str, Any]] = []
    for rec in merged(layout, reader, {}, chains):
        if lo is not None or hi is not None:
            t = ts_epoch(rec["ts"])
            if (lo is not None and t < lo) or (hi is not None and t >= hi):
                continue
        buf.append(rec)
        if len(buf) >= batch:
            engine.process(buf)
            rep.events += len(buf)
            buf = []
            if progress:
                progress(rep.events)
    if buf:
        engine.process(buf)
        rep.events += len(buf)
    engine.flush()
    rep.seconds = time.perf_counter() - t0
    rep.alerts = engine.store.alerts()
    rep.alert_count = len(rep.alerts)
    for a in rep.alerts:
        rep.per_day[a.first_seen.strftime("%Y-%m-%d")][a.rule_id] += 1
    return rep
