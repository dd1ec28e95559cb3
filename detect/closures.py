"""Code templates of the executors' hot paths, compiled once per dispatch entry.

Each template is the body of `run(ctx)`: exactly what the executor's on_event does for one
dispatch entry, with the group / term key computed inline ({KEY}: dict lookups of plain event
fields) instead of by a key function, one Python call less per executor and event. Names in
a template come from the `env` of make_closure (the executor's state containers, compiled
conditions, emit). tests/detect/test_fastpath.py pins them to on_event.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from detect.conditions import EVENT_FIELDS, Ctx

_PLAIN = frozenset(EVENT_FIELDS) | {"origin"}


def is_plain(field: str) -> bool:
    """A field key_fn reads with rec.get(field)."""
    return field in _PLAIN and field.isidentifier()


def key_source(fields: list[str]) -> str:
    """Source of an expression equal to key_fn(fields)(ctx), given `rec = ctx.rec`: inline
    dict lookups for plain event fields, else a call of `key`."""
    if all(map(is_plain, fields)):
        return "(" + ", ".join(f"rec.get({f!r})" for f in fields) + ("," if len(fields) == 1 else "") + ")"
    return "key(ctx)"


@functools.lru_cache(maxsize=256)
def _code(src: str) -> Any:
    return compile(src, "<detect.closures>", "exec")


def make_closure(template: str, fields: list[str], **env: Any) -> Callable[[Ctx], None]:
    """The `run(ctx)` defined by `template` with {KEY} replaced by key_source(fields). Lines
    marked `#test` are dropped when env has no `test` (no dynamic condition to check)."""
    if env.get("test", True) is None:
        template = "\n".join(line for line in template.split("\n") if not line.endswith("#test"))
    ns = dict(env)
    exec(_code(template.replace("{KEY}", key_source(fields))), ns)  # noqa: S102 - our templates, validated field names
    return ns["run"]  # type: ignore[no-any-return]


THRESHOLD_RUN = """
def run(ctx):  # = ThresholdExec.on_event, count mode
    if not test(ctx):  #test
        return  #test
    rec = ctx.rec
    g = {KEY}
    ts = ctx.ts
    last[g] = ts
    dq = groups.get(g)
    if dq is None:
        dq = groups[g] = deque(maxlen=gte)
    dq.append((ts, rec))
    if len(dq) == gte and dq[0][0] > ts - window:
        fire(ctx, dq, emit)
"""


SEQ_FIRST_RUN = """
def run(ctx):  # an event that can only start a sequence (no refs): SequenceExec.on_event's hot path
    rec = ctx.rec
    ts = ctx.ts
    g = {KEY}
    st = groups.get(g)
    if st is None:
        st = groups[g] = [[], {}, ts]
    partials = st[0]
    st[2] = ts
    if partials and partials[0].t_start < ts - maxspan:
        lo = ts - maxspan
        partials[:] = [p for p in partials if p.t_start >= lo]
    if before0:
        absent_last = st[1]
        if absent_last and any(absent_last.get(a, neg) >= ts - within[a] for a in before0):
            return
    for q in partials:  # keep only the newest start per stage
        if q.next == nxt0:
            q.t_start = q.t_last = ts
            q.recs[0] = rec  # q waits for its second step: recs is [first record], held by q only
            return
    add(partials, _Partial(nxt0, ts, ts, [rec], {}))
"""

SEQ_ADVANCE_RUN = """
def run(ctx):  # an event that can only advance started sequences (SequenceExec.on_event, one step)
    rec = ctx.rec
    st = groups.get({KEY})
    if st is None:
        return  # nothing started: on_event would only add an empty group
    ts = ctx.ts
    partials = st[0]
    st[2] = ts
    if partials and partials[0].t_start < ts - maxspan:
        lo = ts - maxspan
        partials[:] = [p for p in partials if p.t_start >= lo]
    if not partials:
        return
    absent_last = st[1]
    for p in list(partials):
        if p.next != pos1:
            continue
        if absent_last and any(absent_last.get(a, neg) > p.t_last for a in before1):
            partials.remove(p)
            continue
        if need1 and not test1(ctx, p.env):
            continue
        p.recs.append(rec)
        p.t_last = ts
        for name, gt in captures1:
            p.env[name] = jsonable(gt(ctx))
        partials.remove(p)
        if nxt1 is None:
            emit_partial(ctx, p, emit)
        else:
            p.next = nxt1
            add(partials, p)
"""


NEW_TERM_RUN = """
def run(ctx):  # = NewTermExec.on_event: only a term's first sighting does any work
    rec = ctx.rec
    term = {KEY}
    if term in seen:
        return
    if not test(ctx):  #test
        return  #test
    if not all(term):
        return
    first(ctx, term, emit)
"""

NEW_TERM_KNOWN_RUN = """
def run(ctx):  # = NewTermExec.on_event, with a set of this entry's values known to be in seen
    rec = ctx.rec
    if rec.get({VAR}) in known:
        return
    term = {KEY}
    if term in seen:
        if len(known) >= known_max:
            known.clear()
        known.add(rec.get({VAR}))
        return
    if not test(ctx):  #test
        return  #test
    if not all(term):
        return
    first(ctx, term, emit)
    if term in seen:
        known.add(rec.get({VAR}))
"""
KNOWN_MAX = 100_000


def fixed_by(field: str, key: tuple[Any, ...]) -> bool:
    """Every event of the dispatch entry `key` (server, tool, decision, result, ...) has the same
    value of `field` (NewTermExec: those term fields need no lookup)."""
    if field == "tool":
        return True  # key[1] is rec["tool"]
    if field == "server":
        return bool(key[0])  # key[0] is rec.get("server") or "": exact unless empty
    return field in ("decision", "result")  # key[2], key[3] are rec.get(...)
