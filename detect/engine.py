"""DetectionEngine: rules + statistical detectors + alert store, one code path for live
detection (in-process listener / follower) and backtests.

    engine = DetectionEngine.from_config(config)          # owning process of lake/alerts/
    alerts = engine.process(records)                        # stored records, chain order
    engine.process_quarantine(items)                        # quarantine records
    engine.save_state()                                     # <state_dir>/detect/engine.json

Determinism: every window is an event-time window, every time-driven step (sweeps, window
closes, model retraining) is triggered by the event-time watermark, and statistical scoring
does not depend on batch boundaries. The same records in the same order give the same
alerts (ids, counts, evidence) however they are split into `process` calls, and across a
save_state / load_state restart. Records whose (chain_id, seq) was already processed are
skipped, so replays after a crash are idempotent.

Speed (tests/detect/test_fastpath.py pins it to the plain semantics): an event is dispatched
on (server, tool, decision, result, redacted, capabilities) to the executors it can reach,
each bound once per dispatch key to a closure with the statically decided condition parts
folded away (detect/closures.py); `ts` strings are parsed per batch (timeutil.batch_epochs);
tool capabilities, destinations and regex verdicts on argument strings are memoised.
"""

from __future__ import annotations

import hashlib
import operator
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from detect.alerts import AlertChange, AlertStore, Match, Suppression
from detect.catalog import Catalog, ToolInfo
from detect.closures import is_plain
from detect.conditions import Ctx, residual
from detect.executors import Executor, NewTermExec, key_fn, make_executor
from detect.rules import Rule, load_rules
from detect.stats import StatDetector, StatsSettings, default_detectors
from detect.timeutil import _MIN_CACHE, batch_epochs, minute_epoch, parse_duration, ts_epoch
from schemas.alert import Alert

STATE_VERSION = 1
SWEEP_EVERY_S = 600.0

Dispatch = list[Callable[[Ctx], None]]
MAX_DISPATCH = 200_000
MAX_DISPATCH_PER_TOOL = 1000
BATCH_TS_MIN = 32
_get_ts = operator.itemgetter("ts")
key4 = operator.itemgetter("server", "tool", "decision", "result")


class DetectionEngine:
    def __init__(
        self,
        rules: list[Rule],
        catalog: Catalog | None = None,
        store: AlertStore | None = None,
        *,
        detectors: list[StatDetector] | None = None,
        state_path: Path | str | None = None,
        on_match: Callable[[Match, str | None], None] | None = None,
    ) -> None:
        self.catalog = catalog or Catalog.load()
        self.store = store if store is not None else AlertStore(None)  # an empty store is falsy (__len__)
        self.rules = rules
        self.execs: list[Executor] = [make_executor(r) for r in rules if r.spec.input == "events"]
        self.q_execs: list[Executor] = [make_executor(r) for r in rules if r.spec.input == "quarantine"]
        self.detectors = detectors if detectors is not None else []
        self.state_path = Path(state_path) if state_path else None
        self.on_match = on_match
        # (server, tool, decision, result) -> [entry when not redacted, entry when redacted]; an entry is
        # (catalog info, "server/tool", caps, dispatch), or for tools whose capabilities depend on arguments
        # (info, "server/tool", None, {caps: dispatch})
        self._dispatch: dict[tuple[Any, ...], list[Any]] = {}
        self.watermark = float("-inf")
        self.q_watermark = float("-inf")
        self._next_sweep = float("-inf")
        self.progress: dict[str, int] = {}
        # first-seen registries of new_term history groups, shared by rules with the same history_by
        self.registries: dict[tuple[str, ...], dict[tuple[Any, ...], float]] = {}
        for ex in self.execs:
            if isinstance(ex, NewTermExec) and ex.learning > 0:
                ex.registry = self.registries.setdefault(tuple(ex.history_by), {})
        self._reg_fns = [(key_fn(list(k)), reg) for k, reg in self.registries.items()]
        one = list(self.registries.items())
        self._reg1: tuple[dict[tuple[Any, ...], float] | None, str] = (
            (one[0][1], one[0][0][0]) if len(one) == 1 and len(one[0][0]) == 1 and is_plain(one[0][0][0]) else (None, ""))
        self._max_registry = 1_000_000
        self.stats = {"events": 0, "skipped_replayed": 0, "quarantine": 0, "matches": 0, "bad_records": 0}

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_config(
        cls,
        config: Any,
        *,
        rule_dirs: list[str] | None = None,
        builtin_rules: bool = True,
        alerts_dir: Path | str | None | bool = True,
        with_stats: bool | None = None,
        load_state: bool = True,
    ) -> DetectionEngine:
        """Engine from a tooltrail Config. alerts_dir=True: the lake's alert store (this process
        owns it); None/False: memory only (backtest)."""
        ds = config.detect
        rules = load_rules(list(ds.rule_dirs) + list(rule_dirs or []), builtin=builtin_rules)
        catalog = Catalog.load([ds.catalog_file] if ds.catalog_file else [])
        layout = config.layout
        adir = layout.alerts_dir if alerts_dir is True else (alerts_dir or None)
        store = AlertStore(adir, suppressions=settings_suppressions(ds))
        use_stats = ds.statistical if with_stats is None else with_stats
        dets = default_detectors(ds.stats_settings(), ds.detectors) if use_stats else []
        eng = cls(rules, catalog, store, detectors=dets, state_path=layout.state_dir / "detect" / "engine.json")
        if load_state and alerts_dir is True:
            eng.load_state()
        return eng

    # -- events ---------------------------------------------------------------------------------
    def _emit(self, m: Match) -> None:
        self.stats["matches"] += 1
        aid = self.store.add_match(m)
        if self.on_match is not None:
            self.on_match(m, aid)

    def _dispatch_pair(self, k4: tuple[Any, ...]) -> list[Any]:
        if len(self._dispatch) >= MAX_DISPATCH:
            self._dispatch.clear()
        pair = self._dispatch[k4] = [None, None]  # [not redacted, redacted]
        return pair

    def _dispatch_entry(self, k4: tuple[Any, ...], red: bool, pair: list[Any]) -> tuple[ToolInfo, str, Any, Any]:
        server, tool = k4[0] or "", k4[1]
        ti = self.catalog.info(server, tool)
        if ti.arg_caps:
            ent: tuple[ToolInfo, str, Any, Any] = (ti, f"{server}/{tool}", None, {})
        else:
            ent = (ti, f"{server}/{tool}", ti.caps, self._build_dispatch((server, tool, k4[2], k4[3], not red, ti.caps), ti))
        pair[1 if red else 0] = ent
        return ent

    def _build_dispatch(self, key: tuple[Any, ...], ti: ToolInfo) -> Dispatch:
        """The executors an event with this key can reach, each bound to the steps it can
        match with statically decided condition parts folded away. Each event is tested only
        against these candidates (rules index)."""
        srec = {
            "server": key[0],
            "tool": key[1],
            "decision": key[2],
            "result": key[3],
            "redactions": None if key[4] else {"?": 1},
        }  # key: (server, tool, decision, result, not redacted, caps)
        sc = Ctx(srec, 0.0, ti, key[5], None)
        out: Dispatch = []
        for ex in self.execs:
            steps = []
            for idx, node in ex.dispatch_steps():
                t = node.tri(sc)
                if t is False:
                    continue
                if t is None:
                    node = residual(node, sc)
                steps.append((idx, node, t is None))
            if steps:
                steps.sort(key=lambda x: -x[0])
                out.append(ex.bind(steps, self._emit, key))
        return out

    def process(self, records: Iterable[dict[str, Any]]) -> list[Alert]:
        """Run every detector over stored records (in chain order). Returns the alerts created
        or changed by this call (and writes them to the store)."""
        return [c.alert for c in self.process_changes(records)]

    def process_changes(self, records: Iterable[dict[str, Any]]) -> list[AlertChange]:
        self._run(records)
        return self.flush()

    def run_batch(self, records: Iterable[dict[str, Any] | float]) -> None:
        """process() for backtests: the same state changes, without building alert
        snapshots (memory store without listeners); records may include watermark ticks."""
        self._run(records)
        for d in self.detectors:
            d.flush(self._emit)
        self.store.settle()

    def _run(self, records: Iterable[dict[str, Any] | float]) -> None:
        """The hot loop. A float among the records is a watermark tick: event time advanced
        to it through records this engine does not see (a partitioned backtest), with the
        same sweeps they would have triggered."""
        emit = self._emit
        cat = self.catalog
        disp = self._dispatch
        progress = self.progress
        dets = self.detectors
        reg_fns = self._reg_fns
        reg1, reg1_field = self._reg1
        min_cache = _MIN_CACHE
        stats = self.stats
        wm = self.watermark
        next_sweep = self._next_sweep
        n = 0
        if records.__class__ is not list:
            records = list(records)
        # event times of canonical `ts` strings parsed for the whole batch at once (None: parse below)
        if len(records) >= BATCH_TS_MIN:
            try:
                tsv = batch_epochs(list(map(_get_ts, records)))
            except (KeyError, TypeError):  # a record without ts, or watermark ticks among the records
                tsv = batch_epochs([r.get("ts") if r.__class__ is dict else None for r in records])  # type: ignore[union-attr]
        else:
            tsv = [None] * len(records)
        for rec, ts in zip(records, tsv, strict=True):
            if rec.__class__ is float:
                if rec > wm:
                    wm = self.watermark = rec  # type: ignore[assignment]
                    if rec >= next_sweep:
                        self._sweep(rec)  # type: ignore[arg-type]
                        next_sweep = self._next_sweep
                continue
            get = rec.get  # type: ignore[union-attr]
            cid = get("chain_id")
            if cid is not None:
                seq = get("seq")
                if seq is not None:
                    if seq < progress.get(cid, 0):
                        stats["skipped_replayed"] += 1
                        continue
                    progress[cid] = seq + 1
            try:
                if ts is None:
                    t = rec["ts"]  # type: ignore[index]
                    if len(t) == 27 and t[26] == "Z":  # canonical form: same float as ts_epoch(t)
                        base = min_cache.get(t[:16])
                        if base is None:
                            base = minute_epoch(t)
                        ts = base + int(t[17:19]) + int(t[20:26]) * 1e-6
                    else:
                        ts = ts_epoch(t)
                tool = rec["tool"]  # type: ignore[index]
            except (KeyError, TypeError, ValueError):
                stats["bad_records"] += 1
                continue
            n += 1
            if ts > wm:
                wm = self.watermark = ts
                if ts >= next_sweep:
                    self._sweep(ts)
                    next_sweep = self._next_sweep
            try:
                k4 = key4(rec)  # (server, tool, decision, result) in one C call
            except KeyError:
                k4 = (get("server"), tool, get("decision"), get("result"))
            pair = disp.get(k4)
            if pair is None:
                pair = self._dispatch_pair(k4)
            red = get("redactions")
            ent = pair[1] if red else pair[0]
            if ent is None:
                ent = self._dispatch_entry(k4, bool(red), pair)
            ti, tkey, caps, cands = ent
            if caps is None:  # capabilities that depend on argument values: a dispatch per set
                caps = ti.caps_of(get("args"))
                by_caps = cands
                cands = by_caps.get(caps)
                if cands is None:
                    if len(by_caps) >= MAX_DISPATCH_PER_TOOL:
                        by_caps.clear()
                    cands = by_caps[caps] = self._build_dispatch((k4[0] or "", k4[1], k4[2], k4[3], not red, caps), ti)
            ctx = Ctx(rec, ts, ti, caps, cat)  # type: ignore[arg-type]
            if reg1 is not None:  # the usual single registry on one plain field (principal)
                gk = (get(reg1_field),)
                if gk not in reg1:
                    self._register(reg1, gk, ts)
            else:
                for kf, reg in reg_fns:
                    gk = kf(ctx)
                    if gk not in reg:
                        self._register(reg, gk, ts)
            for run in cands:
                run(ctx)
            if dets:
                for d in dets:
                    d.on_event(rec, ts, tkey, caps, emit)
        stats["events"] += n

    def _register(self, reg: dict[tuple[Any, ...], float], gk: tuple[Any, ...], ts: float) -> None:
        reg[gk] = ts
        if len(reg) > self._max_registry:
            del reg[next(iter(reg))]

    def _sweep(self, wm: float) -> None:
        self._next_sweep = (wm // SWEEP_EVERY_S + 1) * SWEEP_EVERY_S
        for ex in self.execs:
            ex.sweep(wm)
        for d in self.detectors:
            d.on_watermark(wm, self._emit)
        self.store.evict(wm)

    def flush(self) -> list[AlertChange]:
        """Score pending statistical windows and write changed alerts."""
        for d in self.detectors:
            d.flush(self._emit)
        return self.store.flush()

    # -- quarantine -------------------------------------------------------------------------------
    def process_quarantine(self, items: Iterable[dict[str, Any]]) -> list[Alert]:
        """Quarantine records {received_at, source, origin, reasons: [{field, reason}], raw}."""
        for it in items:
            try:
                ts = ts_epoch(it["received_at"])
            except (KeyError, TypeError, ValueError):
                self.stats["bad_records"] += 1
                continue
            rec = dict(it)
            rec.setdefault("ts", it["received_at"])
            if "event_id" not in rec:
                rec["event_id"] = (
                    "q_" + hashlib.sha256(orjson.dumps(it, option=orjson.OPT_SORT_KEYS, default=str)).hexdigest()[:24]
                )
            self.stats["quarantine"] += 1
            if ts > self.q_watermark:
                self.q_watermark = ts
                for ex in self.q_execs:
                    ex.sweep(ts)
            ctx = Ctx(rec, ts, None, frozenset(), None)
            for ex in self.q_execs:
                ex.on_event(ctx, [(0, ex.rule.where, True)], self._emit)
        return [c.alert for c in self.store.flush()]

    # -- state -----------------------------------------------------------------------------------
    def _fingerprint(self, ex: Executor) -> str:
        spec = orjson.dumps(ex.rule.spec.model_dump(mode="json", exclude={"tests"}))
        return f"{ex.rule.id}@{ex.rule.spec.version}:{hashlib.sha256(spec).hexdigest()[:16]}"

    def state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "watermark": self.watermark if self.watermark != float("-inf") else None,
            "q_watermark": self.q_watermark if self.q_watermark != float("-inf") else None,
            "next_sweep": self._next_sweep if self._next_sweep != float("-inf") else None,
            "progress": self.progress,
            "registries": [[list(k), [[list(g), t] for g, t in reg.items()]] for k, reg in self.registries.items()],
            "executors": {self._fingerprint(ex): ex.state() for ex in self.execs + self.q_execs},
            "detectors": {d.name: d.state() for d in self.detectors},
            "store": self.store.state(),
            "stats": self.stats,
        }

    def load(self, st: dict[str, Any]) -> None:
        if st.get("version") != STATE_VERSION:
            raise ValueError(f"detector state version {st.get('version')} is not {STATE_VERSION}")
        self._dispatch.clear()  # rebuild dispatch closures against the loaded state
        self.watermark = st["watermark"] if st.get("watermark") is not None else float("-inf")
        self.q_watermark = st["q_watermark"] if st.get("q_watermark") is not None else float("-inf")
        self._next_sweep = st["next_sweep"] if st.get("next_sweep") is not None else float("-inf")
        self.progress = {k: int(v) for k, v in st.get("progress", {}).items()}
        for k, items in st.get("registries", []):
            reg = self.registries.get(tuple(k))
            if reg is not None:
                reg.clear()
                reg.update({tuple(g): t for g, t in items})
        ex_state = st.get("executors", {})
        for ex in self.execs + self.q_execs:
            fp = self._fingerprint(ex)
            if fp in ex_state:  # a changed rule starts fresh
                ex.load(ex_state[fp])
        dstate = st.get("detectors", {})
        for d in self.detectors:
            if d.name in dstate:
                d.load(dstate[d.name])
        self.store.load(st.get("store", {}))
        self.stats.update(st.get("stats", {}))

    def save_state(self, path: Path | str | None = None) -> Path | None:
        """Atomically write the state (baselines, windows, partial sequences, open alerts,
        per-chain progress). Call after `process` returned (alerts flushed)."""
        p = Path(path) if path else self.state_path
        if p is None:
            return None
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".tmp")
        data = orjson.dumps(self.state(), option=orjson.OPT_SERIALIZE_NUMPY)
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
        return p

    def load_state(self, path: Path | str | None = None) -> bool:
        p = Path(path) if path else self.state_path
        if p is None or not p.exists():
            return False
        self.load(orjson.loads(p.read_bytes()))
        return True


def settings_suppressions(ds: Any) -> list[Suppression]:
    out = []
    for s in getattr(ds, "suppressions", []) or []:
        d = dict(s) if isinstance(s, dict) else s.model_dump()
        until = d.pop("until", None)
        out.append(Suppression(**d, until=ts_epoch(until) if isinstance(until, str) else until))
    return out


class Listener:
    """In-process driver: `ingestor.add_listener(Listener(engine))` runs detection on every
    durable batch and saves state at most every `save_every_s` seconds."""

    def __init__(self, engine: DetectionEngine, save_every_s: float = 5.0) -> None:
        self.engine = engine
        self.save_every_s = save_every_s
        self._last_save = time.monotonic()

    def __call__(self, records: list[dict[str, Any]]) -> list[Alert]:
        alerts = self.engine.process(records)
        if time.monotonic() - self._last_save >= self.save_every_s:
            self.engine.save_state()
            self._last_save = time.monotonic()
        return alerts


__all__ = ["DetectionEngine", "Listener", "StatsSettings", "parse_duration"]
