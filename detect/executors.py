"""Stateful executors of the four rule kinds. All windows are event-time windows; state is
bounded (per-group TTL sweeps, capped partial matches / terms) and serialisable."""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from detect.alerts import Match, RuleMeta
from detect.closures import (
    KNOWN_MAX,
    NEW_TERM_KNOWN_RUN,
    NEW_TERM_RUN,
    SEQ_ADVANCE_RUN,
    SEQ_FIRST_RUN,
    THRESHOLD_RUN,
    fixed_by,
    is_plain,
    make_closure,
)
from detect.conditions import Ctx, Node, getter
from detect.rules import Rule
from detect.timeutil import parse_duration

SLIM_FIELDS = ("event_id", "chain_id", "seq", "hash", "ts", "principal", "agent", "session", "server", "tool", "source")
MAX_PARTIALS = 16
EVIDENCE_KEEP = 20

Emit = Callable[[Match], None]
DispatchKey = tuple[Any, ...]  # (server, tool, decision, result, not redacted, caps)


def slim(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: rec[k] for k in SLIM_FIELDS if k in rec}


def first_str(v: Any) -> str | None:
    if type(v) is str:
        return v
    if v is None:
        return None
    if isinstance(v, list | tuple):
        return first_str(v[0]) if v else None
    if isinstance(v, set | frozenset):
        return ",".join(sorted(map(str, v))) if v else None
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def key_fn(fields: list[str]) -> Callable[[Ctx], tuple[Any, ...]]:
    """ctx -> tuple of the fields' values (first value, as text). Plain event fields compile
    to direct dict lookups (hot path)."""
    if all(map(is_plain, fields)):
        if len(fields) == 1:
            return eval(f"lambda c: (c.rec.get({fields[0]!r}),)")  # noqa: S307 - validated identifier
        body = ", ".join(f"g({f!r})" for f in fields)
        ns: dict[str, Any] = {}
        exec(f"def key(c):\n    g = c.rec.get\n    return ({body})\n", ns)  # noqa: S102 - validated identifiers
        return ns["key"]  # type: ignore[no-any-return]
    gs = [getter(f) for f in fields]
    return lambda c: tuple(first_str(g(c)) for g in gs)


def jsonable(v: Any) -> Any:
    if isinstance(v, set | frozenset):
        return sorted(map(str, v))
    if isinstance(v, tuple):
        return list(v)
    return v


def cap_evidence(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if len(recs) <= EVIDENCE_KEEP:
        return list(recs)
    half = EVIDENCE_KEEP // 2
    return list(recs[:half]) + list(recs[-half:])


def auto_context(ctx: Ctx) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if ctx.ti is not None:
        if ctx.caps:
            out["capabilities"] = sorted(ctx.caps)
        d = ctx.dest()
        if d is not None and d.values:
            out["destination_type"] = d.type
            out["destinations"] = d.values[:10]
            if d.external:
                out["external_destinations"] = d.external[:10]
        hs = ctx.hosts()
        if hs:
            out["url_hosts"] = hs[:10]
    red = ctx.rec.get("redactions")
    if red:
        out["redactions"] = red
    return out


def meta_of(rule: Rule) -> RuleMeta:
    s = rule.spec
    return RuleMeta(rule_id=s.id, version=s.version, title=s.title, severity=s.severity, tags=tuple(s.tags),
                    description=s.description.strip(), runbook=s.runbook.strip(), detector=s.kind,
                    group_window=rule.group_window, suppress_for=rule.suppress_for)


class Executor:
    observe_all = False  # dispatched for every event (statically non-matching ones with dyn=None)

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.meta = meta_of(rule)
        self.group = key_fn(rule.spec.group_by)

    # step list for dispatch: (step index, node)
    def dispatch_steps(self) -> list[tuple[int, Node]]:
        return [(0, self.rule.where)]

    def dedup(self, ctx: Ctx) -> str:
        parts = [self.rule.id]
        for f, g in zip(self.rule.dedup_fields, self.rule.dedup_getters, strict=True):
            parts.append(f"{f}={first_str(g(ctx)) or ''}")
        return "|".join(parts)

    def context(self, ctx: Ctx) -> dict[str, Any]:
        out = auto_context(ctx)
        for name, g in self.rule.context_getters:
            v = g(ctx)
            if v is not None and v != []:
                out[name] = jsonable(v)
        return out

    def on_event(self, ctx: Ctx, steps: list[tuple[int, Node, bool]], emit: Emit) -> None:
        raise NotImplementedError

    def bind(self, steps: list[tuple[int, Node, bool]], emit: Emit, key: DispatchKey | None = None) -> Callable[[Ctx], None]:
        """ctx -> None: on_event for one dispatch entry (its steps fixed), built once per
        dispatch key (server, tool, decision, result, not redacted, caps). Executors override
        it with specialised closures that do exactly what on_event does. Closures hold the
        state containers, so load() must update them in place."""
        on_event = self.on_event
        return lambda ctx: on_event(ctx, steps, emit)

    def sweep(self, wm: float) -> None:
        pass

    def state(self) -> Any:
        return None

    def load(self, st: Any) -> None:
        pass


class MatchExec(Executor):
    def on_event(self, ctx: Ctx, steps: list[tuple[int, Node, bool]], emit: Emit) -> None:
        _, node, dyn = steps[0]
        if dyn and not node.test(ctx):
            return
        emit(Match(self.meta, ctx.ts, self.dedup(ctx), [ctx.rec], self.context(ctx)))

    def bind(self, steps: list[tuple[int, Node, bool]], emit: Emit, key: DispatchKey | None = None) -> Callable[[Ctx], None]:
        _, node, dyn = steps[0]
        meta, dedup, context = self.meta, self.dedup, self.context
        if not dyn:
            return lambda ctx: emit(Match(meta, ctx.ts, dedup(ctx), [ctx.rec], lambda: context(ctx)))
        test = node.test

        def run(ctx: Ctx) -> None:
            if test(ctx):
                emit(Match(meta, ctx.ts, dedup(ctx), [ctx.rec], lambda: context(ctx)))

        return run


class ThresholdExec(Executor):
    def __init__(self, rule: Rule) -> None:
        super().__init__(rule)
        t = rule.spec.threshold
        assert t is not None
        self.window = parse_duration(t.window)
        self.gte = t.gte
        self.distinct = t.distinct
        self.dget = getter(t.distinct) if t.distinct else None
        self.groups: dict[tuple[str | None, ...], Any] = {}
        self.last: dict[tuple[str | None, ...], float] = {}

    def on_event(self, ctx: Ctx, steps: list[tuple[int, Node, bool]], emit: Emit) -> None:
        _, node, dyn = steps[0]
        if dyn and not node.test(ctx):
            return
        g = self.group(ctx)
        ts = ctx.ts
        self.last[g] = ts
        lo = ts - self.window
        if self.dget is not None:
            v = first_str(self.dget(ctx))
            if v is None:
                return
            d = self.groups.get(g)
            if d is None:
                d = self.groups[g] = {}
            d.pop(v, None)
            d[v] = (ts, ctx.rec)
            if len(d) >= self.gte:
                for k in [k for k, (t, _) in d.items() if t <= lo]:
                    del d[k]
                if len(d) >= self.gte:
                    recs = [r for _, r in sorted(d.values(), key=lambda x: x[0])]
                    c = self.context(ctx)
                    c.update({"distinct_field": self.distinct, "distinct_count": len(d), "values": list(d)[:20],
                              "window_s": self.window})
                    emit(Match(self.meta, ts, self.dedup(ctx), cap_evidence(recs), c, actual=float(len(d)),
                               expected=float(self.gte)))
                    self.groups[g] = {}
            return
        dq = self.groups.get(g)
        if dq is None:
            dq = self.groups[g] = deque(maxlen=self.gte)
        dq.append((ts, ctx.rec))
        # >= gte events in (ts - window, ts]  <=>  the gte-th most recent one is inside the window
        if len(dq) == self.gte and dq[0][0] > lo:
            self._fire(ctx, dq, emit)

    def _fire(self, ctx: Ctx, dq: deque[tuple[float, dict[str, Any]]], emit: Emit) -> None:
        recs = [r for _, r in dq]
        c = self.context(ctx)
        c.update({"count": len(dq), "window_s": self.window})
        emit(Match(self.meta, ctx.ts, self.dedup(ctx), cap_evidence(recs), c, actual=float(len(dq)),
                   expected=float(self.gte)))
        dq.clear()

    def bind(self, steps: list[tuple[int, Node, bool]], emit: Emit, key: DispatchKey | None = None) -> Callable[[Ctx], None]:
        if self.dget is not None:  # distinct counting: rare (denials), the generic path
            return super().bind(steps, emit)
        _, node, dyn = steps[0]
        return make_closure(THRESHOLD_RUN, self.rule.spec.group_by, key=self.group, test=node.test if dyn else None,
                            groups=self.groups, last=self.last, window=self.window, gte=self.gte, fire=self._fire,
                            emit=emit, deque=deque)

    def sweep(self, wm: float) -> None:
        lo = wm - self.window
        for g in [g for g, t in self.last.items() if t <= lo]:
            del self.last[g]
            self.groups.pop(g, None)

    def state(self) -> Any:
        out = []
        for g, v in self.groups.items():
            items = list(v.items()) if isinstance(v, dict) else [(None, x) for x in v]
            out.append([list(g), self.last.get(g, 0.0), [[k, t, slim(r)] for k, (t, r) in items]])
        return out

    def load(self, st: Any) -> None:
        self.groups.clear()
        self.last.clear()
        for g, last, items in st or []:
            key = tuple(g)
            self.last[key] = last
            if self.dget is not None:
                self.groups[key] = {k: (t, r) for k, t, r in items}
            else:
                self.groups[key] = deque(((t, r) for _, t, r in items), maxlen=self.gte)


class _Partial:
    __slots__ = ("next", "t_start", "t_last", "recs", "env")

    def __init__(self, nxt: int, t_start: float, t_last: float, recs: list[dict[str, Any]], env: dict[str, Any]) -> None:
        self.next = nxt
        self.t_start = t_start
        self.t_last = t_last
        self.recs = recs
        self.env = env


class SequenceExec(Executor):
    def __init__(self, rule: Rule) -> None:
        super().__init__(rule)
        self.maxspan = parse_duration(rule.spec.maxspan or "0s")
        self.steps = rule.steps
        n = len(self.steps)
        self.real = [i for i, (s, _) in enumerate(self.steps) if not s.absent]
        self.first_real = self.real[0]
        self.last_real = self.real[-1]
        self.next_real = {self.real[k]: (self.real[k + 1] if k + 1 < len(self.real) else None) for k in range(len(self.real))}
        self.absent_before: dict[int, list[int]] = {}
        prev = -1
        for i in self.real:
            self.absent_before[i] = [j for j in range(prev + 1, i) if self.steps[j][0].absent]
            prev = i
        self.within = [parse_duration(s.within) if s.within else self.maxspan for s, _ in self.steps]
        refs = [r for _, node in self.steps for r in node.refs]
        self.has_refs = bool(refs)
        self.captures: dict[int, list[tuple[str, Any]]] = {i: [] for i in range(n)}
        names = {s.name: i for i, (s, _) in enumerate(self.steps)}
        for r in sorted(set(refs)):
            sname, _, fld = r.partition(".")
            self.captures[names[sname]].append((r, getter(fld)))
        self.groups: dict[tuple[str | None, ...], list[Any]] = {}  # key -> [partials, absent_last{}, last_ts]

    def dispatch_steps(self) -> list[tuple[int, Node]]:
        return [(i, node) for i, (_, node) in enumerate(self.steps)]

    def on_event(self, ctx: Ctx, steps: list[tuple[int, Node, bool]], emit: Emit) -> None:
        ts = ctx.ts
        g = self.group(ctx)
        st = self.groups.get(g)
        if st is None:
            st = self.groups[g] = [[], {}, ts]
        partials: list[_Partial] = st[0]
        absent_last: dict[int, float] = st[1]
        st[2] = ts
        absent_hits: list[int] = []
        lo = ts - self.maxspan
        if partials and partials[0].t_start < lo:
            partials[:] = [p for p in partials if p.t_start >= lo]
        for pos, node, dyn in steps:  # dispatch lists steps from last to first
            spec = self.steps[pos][0]
            if spec.absent:
                if not dyn or node.test(ctx):
                    absent_hits.append(pos)
                continue
            if pos != self.first_real:
                for p in list(partials):
                    if p.next != pos:
                        continue
                    if any(absent_last.get(a, float("-inf")) > p.t_last for a in self.absent_before[pos]):
                        partials.remove(p)
                        continue
                    if (dyn or node.refs) and not node.test(ctx, p.env):
                        continue
                    p.recs.append(ctx.rec)
                    p.t_last = ts
                    for name, gt in self.captures[pos]:
                        p.env[name] = jsonable(gt(ctx))
                    nxt = self.next_real[pos]
                    partials.remove(p)
                    if nxt is None:
                        self._emit(ctx, p, emit)
                    else:
                        p.next = nxt
                        self._add(partials, p)
            else:
                if dyn and not node.test(ctx):
                    continue
                if absent_last and any(absent_last.get(a, float("-inf")) >= ts - self.within[a] for a in self.absent_before[pos]):
                    continue
                nxt0 = self.next_real[pos]
                if not self.has_refs and nxt0 is not None:
                    for q in partials:  # hot path: keep only the newest start per stage
                        if q.next == nxt0:
                            q.t_start = q.t_last = ts
                            q.recs = [ctx.rec]
                            break
                    else:
                        self._add(partials, _Partial(nxt0, ts, ts, [ctx.rec], {}))
                    continue
                env = {name: jsonable(gt(ctx)) for name, gt in self.captures[pos]}
                p = _Partial(self.next_real[pos] if self.next_real[pos] is not None else -1, ts, ts, [ctx.rec], env)
                if self.next_real[pos] is None:
                    self._emit(ctx, p, emit)
                else:
                    self._add(partials, p)
        for a in absent_hits:
            absent_last[a] = ts

    def bind(self, steps: list[tuple[int, Node, bool]], emit: Emit, key: DispatchKey | None = None) -> Callable[[Ctx], None]:
        """on_event with the per-step facts looked up once: same logic, same order, plus two
        specialised closures for the common single-step dispatch entries."""
        plan = [(pos, node.test, dyn, bool(dyn or node.refs), self.steps[pos][0].absent, pos == self.first_real,
                 self.absent_before.get(pos, []), self.captures[pos], self.next_real.get(pos)) for pos, node, dyn in steps]
        group, groups, maxspan, within, add, has_refs = (self.group, self.groups, self.maxspan, self.within, self._add,
                                                         self.has_refs)
        emit_partial = self._emit
        neg = float("-inf")

        fields = self.rule.spec.group_by
        if len(plan) == 1 and plan[0][5] and not plan[0][2] and not has_refs and plan[0][8] is not None:
            return make_closure(SEQ_FIRST_RUN, fields, key=group, groups=groups, maxspan=maxspan, within=within, add=add,
                                before0=plan[0][6], nxt0=plan[0][8], neg=neg, _Partial=_Partial)
        if len(plan) == 1 and not plan[0][5] and not plan[0][4]:
            pos1, test1, _, need1, _, _, before1, captures1, nxt1 = plan[0]
            return make_closure(SEQ_ADVANCE_RUN, fields, key=group, groups=groups, maxspan=maxspan, pos1=pos1,
                                test1=test1, need1=need1, before1=before1, captures1=captures1, nxt1=nxt1, neg=neg, add=add,
                                emit_partial=emit_partial, emit=emit, jsonable=jsonable)

        def run(ctx: Ctx) -> None:
            ts = ctx.ts
            g = group(ctx)
            st = groups.get(g)
            if st is None:
                st = groups[g] = [[], {}, ts]
            partials: list[_Partial] = st[0]
            st[2] = ts
            lo = ts - maxspan
            if partials and partials[0].t_start < lo:
                partials[:] = [p for p in partials if p.t_start >= lo]
            absent_last: dict[int, float] = st[1]
            absent_hits: list[int] = []
            for pos, test, dyn, need_test, absent, first, before, captures, nxt in plan:
                if absent:
                    if not dyn or test(ctx):
                        absent_hits.append(pos)
                    continue
                if not first:
                    for p in list(partials):
                        if p.next != pos:
                            continue
                        if any(absent_last.get(a, neg) > p.t_last for a in before):
                            partials.remove(p)
                            continue
                        if need_test and not test(ctx, p.env):
                            continue
                        p.recs.append(ctx.rec)
                        p.t_last = ts
                        for name, gt in captures:
                            p.env[name] = jsonable(gt(ctx))
                        partials.remove(p)
                        if nxt is None:
                            emit_partial(ctx, p, emit)
                        else:
                            p.next = nxt
                            add(partials, p)
                else:
                    if dyn and not test(ctx):
                        continue
                    if absent_last and any(absent_last.get(a, neg) >= ts - within[a] for a in before):
                        continue
                    if not has_refs and nxt is not None:
                        for q in partials:
                            if q.next == nxt:
                                q.t_start = q.t_last = ts
                                q.recs = [ctx.rec]
                                break
                        else:
                            add(partials, _Partial(nxt, ts, ts, [ctx.rec], {}))
                        continue
                    env = {name: jsonable(gt(ctx)) for name, gt in captures}
                    p = _Partial(nxt if nxt is not None else -1, ts, ts, [ctx.rec], env)
                    if nxt is None:
                        emit_partial(ctx, p, emit)
                    else:
                        add(partials, p)
            for a in absent_hits:
                absent_last[a] = ts

        return run

    def _add(self, partials: list[_Partial], p: _Partial) -> None:
        for i, q in enumerate(partials):  # one partial per stage and captured values: keep the newest
            if q.next == p.next and (not self.has_refs or q.env == p.env):
                partials[i] = p if p.t_start >= q.t_start else q
                return
        partials.append(p)
        if len(partials) > MAX_PARTIALS:
            del partials[0]

    def _emit(self, ctx: Ctx, p: _Partial, emit: Emit) -> None:
        def context() -> dict[str, Any]:  # built only for a new alert; p is finished, ctx immutable
            c = self.context(ctx)
            c["steps"] = [{"step": self.steps[i][0].name, "tool": r.get("tool"), "server": r.get("server"),
                           "ts": r.get("ts"), "event_id": r.get("event_id")} for i, r in zip(self.real, p.recs, strict=False)]
            if p.env:
                c["captured"] = p.env
            c["span_s"] = round(ctx.ts - p.t_start, 3)
            return c

        emit(Match(self.meta, ctx.ts, self.dedup(ctx), p.recs, context))

    def sweep(self, wm: float) -> None:
        lo = wm - max([self.maxspan] + self.within)
        for g in [g for g, st in self.groups.items() if st[2] < lo]:
            del self.groups[g]

    def state(self) -> Any:
        return [[list(g), [[p.next, p.t_start, p.t_last, [slim(r) for r in p.recs], p.env] for p in st[0]],
                 {str(k): v for k, v in st[1].items()}, st[2]] for g, st in self.groups.items()]

    def load(self, st: Any) -> None:
        self.groups.clear()
        for g, parts, absent, last in st or []:
            self.groups[tuple(g)] = [[_Partial(*p) for p in parts], {int(k): v for k, v in absent.items()}, last]


class NewTermExec(Executor):
    def __init__(self, rule: Rule) -> None:
        super().__init__(rule)
        nt = rule.spec.new_term
        assert nt is not None
        self.fields = nt.fields
        self.tkey = key_fn(nt.fields)
        self.h = len(nt.history_by)
        self.history_by = list(nt.history_by)
        self.learning = parse_duration(nt.learning)
        self.require_history = nt.require_history
        self.max_terms = nt.max_terms
        self.peer_idx = [nt.fields.index(f) for f in nt.unless_known]
        self.peer_min = nt.unless_min_groups
        self.peers: dict[tuple[str, ...], int] = {}
        self.seen: dict[tuple[str, ...], float] = {}
        self.group_terms: dict[tuple[str, ...], int] = {}
        # first-seen times of history groups over *all* events; the engine keeps it (shared by
        # rules with the same history_by) so a group's learning period starts at its first event
        self.registry: dict[tuple[Any, ...], float] = {}
        self._known: list[weakref.ref[set[Any]]] = []  # bound closures' sets of values whose term is in seen

    def on_event(self, ctx: Ctx, steps: list[tuple[int, Node, bool | None]], emit: Emit) -> None:
        _, node, dyn = steps[0]
        term = self.tkey(ctx)
        if term in self.seen:
            return
        if dyn and not node.test(ctx):
            return
        if not all(term):
            return
        self._first_sight(ctx, term, emit)

    def _first_sight(self, ctx: Ctx, term: tuple[Any, ...], emit: Emit) -> None:
        ts = ctx.ts
        self.seen[term] = ts
        if len(self.seen) > self.max_terms:
            del self.seen[next(iter(self.seen))]
            self._forget_known()
        grp = term[: self.h]
        had = self.group_terms.get(grp, 0)
        self.group_terms[grp] = had + 1
        if len(self.group_terms) > self.max_terms:
            del self.group_terms[next(iter(self.group_terms))]
        first = self.registry.get(grp, ts)
        peers = 0
        if self.peer_idx:
            proj = tuple(term[i] for i in self.peer_idx)
            peers = self.peers.get(proj, 0)
            self.peers[proj] = peers + 1
            if len(self.peers) > self.max_terms:
                del self.peers[next(iter(self.peers))]
        if ts - first < self.learning:
            return
        if self.peer_idx and peers >= self.peer_min:
            return
        if self.require_history and had == 0:
            return
        c = self.context(ctx)
        c["new_term"] = dict(zip(self.fields, term, strict=True))
        c["history_since"] = first
        if self.peer_idx:
            c["peer_groups_with_value"] = peers
        emit(Match(self.meta, ts, self.dedup(ctx), [ctx.rec], c))

    def state(self) -> Any:
        return {"seen": [[list(k), v] for k, v in self.seen.items()],
                "groups": [[list(k), v] for k, v in self.group_terms.items()],
                "peers": [[list(k), v] for k, v in self.peers.items()]}

    def load(self, st: Any) -> None:
        st = st or {}
        for d, items in ((self.seen, st.get("seen", [])), (self.group_terms, st.get("groups", [])),
                         (self.peers, st.get("peers", []))):
            d.clear()  # in place: bound dispatch closures hold these dicts
            d.update((tuple(k), v) for k, v in items)
        self._forget_known()

    def bind(self, steps: list[tuple[int, Node, bool | None]], emit: Emit,
             key: DispatchKey | None = None) -> Callable[[Ctx], None]:
        _, node, dyn = steps[0]
        env = {"key": self.tkey, "test": node.test if dyn else None, "seen": self.seen, "first": self._first_sight,
               "emit": emit}
        varying = [f for f in self.fields if key is None or not fixed_by(f, key)]
        if len(varying) != 1 or not is_plain(varying[0]) or not all(map(is_plain, self.fields)):
            return make_closure(NEW_TERM_RUN, self.fields, **env)
        # the other term fields are the same for every event of this dispatch entry: a set of
        # the one varying value stands for "term in seen" (emptied whenever seen loses terms)
        known: set[Any] = set()
        if len(self._known) > 64:  # drop sets of dispatch entries the engine has let go
            self._known = [r for r in self._known if r() is not None]
        self._known.append(weakref.ref(known))
        return make_closure(NEW_TERM_KNOWN_RUN.replace("{VAR}", repr(varying[0])), self.fields, known=known,
                            known_max=KNOWN_MAX, **env)

    def _forget_known(self) -> None:
        for r in self._known:
            k = r()
            if k is not None:
                k.clear()


EXECUTORS: dict[str, type[Executor]] = {"match": MatchExec, "threshold": ThresholdExec, "sequence": SequenceExec,
                                        "new_term": NewTermExec}


def make_executor(rule: Rule) -> Executor:
    return EXECUTORS[rule.spec.kind](rule)
