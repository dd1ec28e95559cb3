"""Backtest over stored history in N processes, with the alerts of a one-process replay.

Records are partitioned by principal (a stable hash); each worker replays its partition in
the global merged order (`detect.replay`) through an engine with the rules whose state and
dedup keys include `principal` or `session` (sessions belong to one principal: checked, and
the run falls back to one process when a session spans partitions). Watermark ticks give
every worker the sweeps of the full stream.

Rules with cross-principal state are supported when they are new_term rules (rug pull: per
(server, tool); new server: peers over principals): such a rule changes state only on the
first sighting of a term, so each worker reports the first record of each term in its
partition (with the watermark at that record) and the parent replays these candidates, in
merged order with the full stream's sweep points, through an engine with only those rules.
Anything else (statistical detectors, other cross-principal rules) runs in one process.

    rep = run_backtest(layout, EngineSpec(...), workers=2, since=..., progress=cb)
"""

from __future__ import annotations

import gc
import heapq
import multiprocessing as mp
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from detect.alerts import AlertStore, Suppression
from detect.catalog import Catalog
from detect.conditions import Ctx, Node
from detect.engine import DetectionEngine
from detect.executors import NewTermExec
from detect.follow import BacktestReport
from detect.replay import Replay, ReplayOrderError
from detect.rules import Rule, load_rules
from detect.stats import StatsSettings, default_detectors
from detect.timeutil import epoch_dt, parse_duration, ts_epoch

PARTITION_FIELDS = frozenset({"principal", "session"})
Progress = Callable[[int, int], None]  # (events done, events total)


@dataclass(frozen=True)
class EngineSpec:
    """Everything a worker process needs to build the same engine (picklable)."""

    rule_dirs: tuple[str, ...] = ()
    builtin_rules: bool = True
    catalog_files: tuple[str, ...] = ()
    suppressions: tuple[Suppression, ...] = ()
    stats: StatsSettings | None = None  # None: no statistical detectors
    detectors: tuple[str, ...] | None = None

    def rules(self) -> list[Rule]:
        return load_rules(list(self.rule_dirs), builtin=self.builtin_rules)

    def engine(self, only: set[str] | None = None, with_stats: bool = True) -> DetectionEngine:
        rules = [r for r in self.rules() if only is None or r.id in only]
        dets = []
        if with_stats and self.stats is not None:
            dets = default_detectors(self.stats, list(self.detectors) if self.detectors is not None else None)
        store = AlertStore(None, suppressions=list(self.suppressions))
        return DetectionEngine(rules, Catalog.load(list(self.catalog_files)), store, detectors=dets)


def _keyed(fields: list[str]) -> bool:
    return bool(PARTITION_FIELDS & set(fields))


def rule_scope(rule: Rule) -> str:
    """'local' (all state and dedup keys per principal / session), 'first_sight' (a new_term
    rule with cross-principal state, replayed from first sightings) or 'global'."""
    s = rule.spec
    if s.input != "events":
        return "local"  # quarantine rules do not take part in event backtests
    if s.kind == "new_term":
        nt = s.new_term
        assert nt is not None
        if _keyed(nt.history_by) and not nt.unless_known and _keyed(rule.dedup_fields):
            return "local"
        # registry (learning) values must come from one partition: per principal / session
        return "first_sight" if (rule_learning(rule) == 0 or _keyed(nt.history_by)) else "global"
    if s.kind in ("threshold", "sequence") and not _keyed(s.group_by):
        return "global"
    return "local" if _keyed(rule.dedup_fields) else "global"


def rule_learning(rule: Rule) -> float:
    return parse_duration(rule.spec.new_term.learning) if rule.spec.new_term else 0.0


def plan(spec: EngineSpec, workers: int) -> tuple[list[str], list[str], str]:
    """(local rule ids, first-sight rule ids, reason to run in one process or '')."""
    if workers <= 1:
        return [], [], "one worker"
    if spec.stats is not None:
        return [], [], "statistical detectors keep cross-principal state"
    scopes = {r.id: rule_scope(r) for r in spec.rules()}
    glob = sorted(k for k, v in scopes.items() if v == "global")
    if glob:
        return [], [], f"rules with cross-principal state: {', '.join(glob)}"
    return ([k for k, v in scopes.items() if v == "local"], [k for k, v in scopes.items() if v == "first_sight"], "")


# -- workers ---------------------------------------------------------------------------------------
_COUNTERS: Any = None


def _init_worker(counters: Any) -> None:
    global _COUNTERS
    _COUNTERS = counters
    import pyarrow as pa

    pa.set_cpu_count(1)  # one core per worker: no Arrow thread pools competing with the other worker
    pa.set_io_thread_count(1)


@dataclass
class Job:
    layout: Any
    chains: list[str]
    spec: EngineSpec
    since: float | None
    until: float | None
    n_parts: int
    part: int
    local: list[str]
    first_sight: list[str]
    keep_alerts: bool = True
    chunk: int = 20_000


@dataclass
class WorkerResult:
    part: int
    events: int
    rows: int
    alerts: list[tuple[float, str, Any]]  # (first_seen, alert_id, alert state or rule_id), sorted
    sessions: set[str] = field(default_factory=set)
    candidates: list[tuple[tuple[str, str, int], int, float, dict[str, Any]]] = field(default_factory=list)
    registries: dict[tuple[str, ...], dict[tuple[Any, ...], float]] = field(default_factory=dict)
    triggers: list[tuple[str, str, int, float, int]] = field(default_factory=list)
    cpu_s: float = 0.0


def _sorted_states(store: AlertStore, keep: bool = True) -> list[tuple[float, str, Any]]:
    """The store's alerts as (first_seen, alert_id, state), in AlertStore.alerts() order;
    states pickle much faster than Alert models and are turned into alerts only if asked.
    keep=False: (first_seen, alert_id, rule_id), all a count per day and rule needs."""
    states = list(store.archived.values()) + list(store.by_id.values())
    return sorted(((s.first_seen, s.alert_id, s if keep else s.meta.rule_id) for s in states), key=lambda x: (x[0], x[1]))


def _record_first_sightings(eng: DetectionEngine, ids: set[str], rep: Replay, out: list[Any]) -> None:
    """Replace the first-sight rules' executors by recorders of each term's first record
    that reaches the executor's state (same dispatch, same tests, same order), with the
    batch it is in and the watermark at it."""
    for ex in eng.execs:
        if ex.rule.id not in ids:
            continue
        assert isinstance(ex, NewTermExec)

        def bind(steps: list[tuple[int, Node, bool]], emit: Any, key: Any = None, ex: NewTermExec = ex) -> Callable[[Ctx], None]:
            _, node, dyn = steps[0]
            test = node.test if dyn else None
            tkey, seen = ex.tkey, ex.seen

            def run(ctx: Ctx) -> None:
                term = tkey(ctx)
                if term in seen or (test is not None and not test(ctx)) or not all(term):
                    return
                seen[term] = ctx.ts
                r = ctx.rec
                out.append(((r.get("received_at", ""), r.get("chain_id", ""), r.get("seq", 0)), rep.batch, eng.watermark, r))

            return run

        ex.bind = bind  # type: ignore[method-assign]


def _run_worker(job: Job) -> WorkerResult:
    gc.disable()  # millions of live records and states: full collections would dominate (no cycles here)
    c0 = time.process_time()
    rep = Replay(job.layout, job.chains, since=job.since, until=job.until, n_parts=job.n_parts, part=job.part,
                 chunk=job.chunk, keep_triggers=job.part == 0 and bool(job.first_sight))
    eng = job.spec.engine(set(job.local) | set(job.first_sight), with_stats=job.n_parts == 1)
    cands: list[Any] = []
    _record_first_sightings(eng, set(job.first_sight), rep, cands)
    for chunk in rep.chunks():
        eng.run_batch(chunk)
        if _COUNTERS is not None:
            _COUNTERS[job.part] = rep.events
    eng.run_batch([])  # the final flush of follow.backtest
    first_ids = set(job.first_sight)
    regs = {k: dict(v) for k, v in eng.registries.items()
            if any(isinstance(ex, NewTermExec) and ex.rule.id in first_ids and tuple(ex.history_by) == k for ex in eng.execs)}
    return WorkerResult(job.part, rep.events, rep.rows, _sorted_states(eng.store, job.keep_alerts), rep.sessions, cands, regs,
                        rep.triggers, time.process_time() - c0)


def _replay_first_sightings(spec: EngineSpec, ids: list[str], results: list[WorkerResult]) -> list[tuple[float, str, Any]]:
    """The first-sight rules over every worker's candidates, in merged order and batches,
    with the full stream's sweep points and each candidate's watermark as ticks."""
    if not ids:
        return []
    eng = spec.engine(set(ids), with_stats=False)
    for res in results:
        for k, reg in res.registries.items():
            if k in eng.registries:
                eng.registries[k].update(reg)  # keys are per principal / session: disjoint
    items = [(t[:3], t[4], [t[3]]) for res in results for t in res.triggers]
    items += [(key, batch, [wm, rec]) for res in results for key, batch, wm, rec in res.candidates]
    items.sort(key=lambda x: x[0])  # keys are unique except a candidate that triggered a sweep itself
    batch, buf = None, []
    for _, b, recs in items:
        if b != batch and buf:
            eng.run_batch(buf)
            buf = []
        batch = b
        buf.extend(recs)
    eng.run_batch(buf)
    eng.run_batch([])
    return _sorted_states(eng.store)


def _report(events: int, t0: float, alerts: list[tuple[float, str, Any]], workers: int, note: str, cpu_s: float,
            keep_alerts: bool) -> BacktestReport:
    rep = BacktestReport(events=events, workers=workers, cpu_seconds=cpu_s, note=note, alert_count=len(alerts))
    for first_seen, _, s in alerts:
        rep.per_day[epoch_dt(first_seen).strftime("%Y-%m-%d")][s if isinstance(s, str) else s.meta.rule_id] += 1
    if keep_alerts:
        now = datetime.now(UTC)
        rep.alerts = [AlertStore._snapshot(s, now) for _, _, s in alerts]
    rep.seconds = time.perf_counter() - t0
    return rep


def _shared(sets: list[set[str]]) -> str | None:
    """A value found in more than one of the sets, if any."""
    seen: set[str] = set()
    for s in sets:
        both = seen & s
        if both:
            return min(both)
        seen |= s
    return None


def total_rows(layout: Any, chains: list[str]) -> int:
    from ingest.segments import live_segments

    return sum(info.rows for c in chains for info in live_segments(layout, c))


def run_backtest(layout: Any, spec: EngineSpec, *, workers: int = 2, since: str | None = None, until: str | None = None,
                 chains: list[str] | None = None, progress: Progress | None = None, keep_alerts: bool = True,
                 on_fallback: Callable[[str], None] | None = None) -> BacktestReport:
    """Replay [since, until) (event time) of the stored history; alerts per day and rule.
    keep_alerts=False: only counts (building 10^5 Alert models takes a while)."""
    t0 = time.perf_counter()
    chains = sorted(chains or layout.chain_ids())
    lo = ts_epoch(since) if since else None
    hi = ts_epoch(until) if until else None
    total = total_rows(layout, chains)
    local, first, why = plan(spec, workers)
    if not why:
        gc_was = gc.isenabled()
        gc.disable()  # the workers' results are millions of objects: unpickling them must not trigger collections
        try:
            res = _parallel(layout, chains, spec, lo, hi, workers, local, first, total, progress, keep_alerts)
            shared = _shared([r.sessions for r in res])
            if not shared:
                alerts = list(heapq.merge(*(r.alerts for r in res), _replay_first_sightings(spec, first, res),
                                          key=lambda x: (x[0], x[1])))
                return _report(sum(r.events for r in res), t0, alerts, workers, "", sum(r.cpu_s for r in res), keep_alerts)
            why = f"session {shared!r} spans principals"
        except ReplayOrderError as exc:
            why = str(exc)
        finally:
            if gc_was:
                gc.enable()
    if on_fallback is not None and workers > 1:
        on_fallback(why)
    return _single(layout, chains, spec, since, until, lo, hi, total, progress, t0, why, keep_alerts)


def _single(layout: Any, chains: list[str], spec: EngineSpec, since: str | None, until: str | None, lo: float | None,
            hi: float | None, total: int, progress: Progress | None, t0: float, why: str, keep_alerts: bool) -> BacktestReport:
    c0 = time.process_time()
    eng = spec.engine()
    rep = Replay(layout, chains, since=lo, until=hi, threads=True)
    gc_was = gc.isenabled()
    gc.disable()  # see _run_worker
    try:
        for chunk in rep.chunks():
            eng.run_batch(chunk)  # batches of 20,000 records, as follow.backtest
            if progress:
                progress(rep.events, total)
    except ReplayOrderError as exc:  # the exact merge of follow.merged, record by record
        from detect.follow import backtest

        eng = spec.engine()
        legacy = backtest(layout, eng, since=since, until=until, chains=chains,
                          progress=(lambda n: progress(n, total)) if progress else None)
        return _report(legacy.events, t0, _sorted_states(eng.store), 1, f"{why}; {exc}".strip("; "),
                       time.process_time() - c0, keep_alerts)
    finally:
        if gc_was:
            gc.enable()
    eng.run_batch([])
    return _report(rep.events, t0, _sorted_states(eng.store, keep_alerts), 1, why, time.process_time() - c0, keep_alerts)


def _parallel(layout: Any, chains: list[str], spec: EngineSpec, lo: float | None, hi: float | None, workers: int,
              local: list[str], first: list[str], total: int, progress: Progress | None,
              keep_alerts: bool) -> list[WorkerResult]:
    ctx = mp.get_context("spawn")  # no fork of a parent that may hold Arrow / logging threads
    counters = ctx.Array("q", workers, lock=False)
    jobs = [Job(layout, chains, spec, lo, hi, workers, k, local, first, keep_alerts) for k in range(workers)]
    with ctx.Pool(workers, initializer=_init_worker, initargs=(counters,)) as pool:  # exit terminates workers
        futs = [pool.apply_async(_run_worker, (j,)) for j in jobs]
        while not all(f.ready() for f in futs):
            for f in futs:
                if f.ready() and not f.successful():
                    f.get()  # raises the worker's exception
            futs[0].wait(0.5)
            if progress:
                progress(sum(counters), total)
        return [f.get() for f in futs]
