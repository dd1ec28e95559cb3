"""Rule conditions: a small, declarative language over event fields, compiled to closures.

A condition is a mapping `field: matcher` (all must hold) with the combinators `all: [...]`,
`any: [...]` and `not: {...}`. A matcher is a scalar (equality), a list (membership) or a
mapping of operators (all must hold):

    eq, ne, in, not_in, glob (case-insensitive), regex (Python `re`, search), cidr (host or IP
    in any of the networks; understands decimal / hex / octal IPv4 forms), contains, startswith,
    gt, gte, lt, lte, exists, ref / contains_ref (sequence rules: compare with a field captured
    by an earlier step, written `step_name.field`).

Multi-valued fields (args paths with `[*]`, `cap`, `dest.values`, `url.host`, ...) match when
*any* value matches; negations (ne, not_in, not:) hold when no value matches.

Fields (see FIELDS): event fields, `args.<path>`, `labels.<key>`, `args_text` (every string
in args), `cap` (catalog capabilities incl. argument-based ones), `dest.*`, `url.host`,
`redacted`, `redaction_types`, `redactions.<type>`, `hour`; quarantine records: `source`,
`origin`, `reasons.field`, `reasons.reason`, `raw`.

Static evaluation: `server`, `tool`, `decision`, `result` and `cap` are known from the
event's dispatch key, so each rule is pre-evaluated once per distinct key; only conditions
on the remaining fields run per event.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Callable
from typing import Any

from detect.catalog import (
    CAPABILITIES,
    Catalog,
    DestInfo,
    ToolInfo,
    arg_values,
    extract_urls,
    host_ip,
    string_leaves,
    url_host,
)

EVENT_FIELDS = (
    "event_id",
    "ts",
    "principal",
    "agent",
    "token_id",
    "session",
    "correlation_id",
    "server",
    "server_version",
    "tool",
    "tool_description_hash",
    "decision",
    "reason",
    "scope_checked",
    "result",
    "error",
    "latency_ms",
    "result_bytes",
    "source",
    "received_at",
    "chain_id",
    "seq",
)
DERIVED_FIELDS = (
    "cap",
    "args_text",
    "dest.type",
    "dest.values",
    "dest.external",
    "dest.external_values",
    "dest.internal_values",
    "url.host",
    "redacted",
    "redaction_types",
    "hour",
    "scopes_granted",
    "origin",
    "reasons.field",
    "reasons.reason",
    "raw",
)
PREFIX_FIELDS = ("args.", "labels.", "redactions.")
STATIC_FIELDS = frozenset({"server", "tool", "decision", "result", "cap", "redacted"})
OPS = (
    "eq",
    "ne",
    "in",
    "not_in",
    "glob",
    "regex",
    "cidr",
    "contains",
    "startswith",
    "gt",
    "gte",
    "lt",
    "lte",
    "exists",
    "ref",
    "contains_ref",
)


REGEX_MEMO_LEN = 512
REGEX_MEMO_MAX = 8192


class ConditionError(ValueError):
    """A condition that cannot be compiled; the message names the field path."""


class Ctx:
    """Per-event evaluation context with lazily derived fields."""

    __slots__ = ("rec", "ts", "ti", "caps", "cat", "_texts", "_dest", "_hosts")

    def __init__(
        self, rec: dict[str, Any], ts: float, ti: ToolInfo | None, caps: frozenset[str], cat: Catalog | None
    ) -> None:
        self.rec = rec
        self.ts = ts
        self.ti = ti
        self.caps = caps
        self.cat = cat
        self._texts: list[str] | None = None
        self._dest: DestInfo | None | bool = False
        self._hosts: list[str] | None = None

    def texts(self) -> list[str]:
        if self._texts is None:
            args = self.rec.get("args") or {}
            if args.__class__ is dict:  # string_leaves' fast path, inline: flat string arguments
                vals = list(args.values())
                for x in vals:
                    if x.__class__ is not str:
                        break
                else:
                    self._texts = vals
                    return vals
            self._texts = string_leaves(args, [])
        return self._texts

    def dest(self) -> DestInfo | None:
        if self._dest is False:
            self._dest = self.cat.destinations(self.ti, self.rec.get("args")) if (self.cat and self.ti) else None
        return self._dest  # type: ignore[return-value]

    def hosts(self) -> list[str]:
        if self._hosts is None:
            urls = extract_urls(self.texts())
            self._hosts = [h for h in map(url_host, urls) if h] if urls else []
        return self._hosts


def known_field(name: str) -> bool:
    return name in EVENT_FIELDS or name in DERIVED_FIELDS or name.startswith(PREFIX_FIELDS)


def getter(name: str) -> Callable[[Ctx], Any]:
    """Compile a field name into a value getter."""
    if name == "cap":
        return lambda c: c.caps
    if name == "args_text":
        return Ctx.texts  # the plain function: one call less per evaluation
    if name == "url.host":
        return Ctx.hosts
    if name == "dest.external":

        def g_external(c: Ctx) -> bool:
            d = c.dest()
            return False if d is None else bool(d.external)

        return g_external
    if name.startswith("dest."):
        attr = name[5:]

        def g_dest(c: Ctx) -> Any:
            d = c.dest()
            if d is None:
                return None
            if attr == "type":
                return d.type
            if attr == "values":
                return d.values
            if attr == "external_values":
                return d.external
            return d.internal

        return g_dest
    if name == "redacted":
        return lambda c: bool(c.rec.get("redactions"))
    if name == "redaction_types":
        return lambda c: list((c.rec.get("redactions") or {}).keys())
    if name.startswith("redactions."):
        k = name[11:]
        return lambda c: (c.rec.get("redactions") or {}).get(k)
    if name == "hour":
        return lambda c: int(c.ts // 3600) % 24
    if name.startswith("args."):
        path = name[5:]
        if "." not in path and "[" not in path and "*" not in path:
            return lambda c: (c.rec.get("args") or {}).get(path)
        return lambda c: arg_values(c.rec.get("args") or {}, path)
    if name.startswith("labels."):
        k = name[7:]
        return lambda c: (c.rec.get("labels") or {}).get(k)
    if name.startswith("reasons."):
        k = name[8:]
        return lambda c: [r.get(k) for r in (c.rec.get("reasons") or []) if isinstance(r, dict)]
    return lambda c: c.rec.get(name)


def _values(v: Any) -> tuple[Any, ...] | list[Any] | frozenset[Any]:
    if v.__class__ is list:  # the common multi-valued case first (hot)
        return v  # type: ignore[no-any-return]
    if v is None:
        return ()
    if isinstance(v, list | tuple | set | frozenset):
        return v
    return (v,)


def _norm_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


Pred = Callable[[Any, dict[str, Any] | None], bool]


def _op_pred(op: str, arg: Any, where: str) -> tuple[Pred, list[str]]:
    """One operator -> predicate over the raw field value. Returns (pred, referenced names)."""
    # The `v.__class__ is str` branches are fast paths for the common scalar string value;
    # they return exactly what the generic expression below them returns.
    if op == "eq":
        if isinstance(arg, bool):

            def p_eq_bool(v: Any, e: Any) -> bool:
                if v.__class__ is bool:
                    return v is arg
                return any(x is arg or x == arg for x in _values(v))

            return p_eq_bool, []
        na = _norm_text(arg)

        def p_eq(v: Any, e: Any) -> bool:
            if v.__class__ is str:
                return v in (arg, na)
            for x in _values(v):  # noqa: SIM110 - a loop, not any(<generator>): cheaper per event
                if x == arg or (not isinstance(x, bool) and _norm_text(x) == na):
                    return True
            return False

        return p_eq, []
    if op == "ne":
        p, _ = _op_pred("eq", arg, where)
        return (lambda v, e: not p(v, e)), []
    if op in ("in", "not_in"):
        if not isinstance(arg, list):
            raise ConditionError(f"{where}: '{op}' needs a list")
        s = frozenset(_norm_text(a) for a in arg)

        def p_in(v: Any, e: Any) -> bool:
            if v.__class__ is str:
                return v in s
            for x in _values(v):  # noqa: SIM110
                if _norm_text(x) in s:
                    return True
            return False

        if op == "in":
            return p_in, []
        return (lambda v, e: not p_in(v, e)), []
    if op == "glob":
        pats = [p.lower() for p in (arg if isinstance(arg, list) else [arg])]
        match = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in pats)).match

        def p_glob(v: Any, e: Any) -> bool:
            if v.__class__ is str:
                return match(v.lower()) is not None
            for x in _values(v):  # noqa: SIM110
                if match(_norm_text(x).lower()):
                    return True
            return False

        return p_glob, []
    if op == "regex":
        try:
            searches = [re.compile(p).search for p in (arg if isinstance(arg, list) else [arg])]
        except re.error as exc:
            raise ConditionError(f"{where}: invalid regex: {exc}") from exc

        memo: dict[str, bool] = {}  # verdict per short string: arguments recur (commands, paths, queries)

        def p_regex(v: Any, e: Any) -> bool:
            for x in (v,) if v.__class__ is str else _values(v):
                if isinstance(x, str):
                    hit = memo.get(x) if len(x) <= REGEX_MEMO_LEN else None
                    if hit is None:
                        hit = False
                        for search in searches:
                            if search(x):
                                hit = True
                                break
                        if len(x) <= REGEX_MEMO_LEN:
                            if len(memo) >= REGEX_MEMO_MAX:
                                memo.clear()
                            memo[x] = hit
                    if hit:
                        return True
            return False

        return p_regex, []
    if op == "cidr":
        try:
            nets = [ipaddress.ip_network(p, strict=False) for p in (arg if isinstance(arg, list) else [arg])]
        except ValueError as exc:
            raise ConditionError(f"{where}: invalid CIDR: {exc}") from exc

        def p_cidr(v: Any, e: Any) -> bool:
            for x in _values(v):
                if not isinstance(x, str):
                    continue
                h = url_host(x) if "://" in x else x
                ip = host_ip(h) if h else None
                if ip is not None and any(ip.version == n.version and ip in n for n in nets):
                    return True
            return False

        return p_cidr, []
    if op == "contains":
        subs = [str(a) for a in (arg if isinstance(arg, list) else [arg])]

        def p_contains(v: Any, e: Any) -> bool:
            for x in (v,) if v.__class__ is str else _values(v):
                if isinstance(x, str):
                    for sub in subs:
                        if sub in x:
                            return True
            return False

        return p_contains, []
    if op == "startswith":
        pre = tuple(str(a) for a in (arg if isinstance(arg, list) else [arg]))
        return (lambda v, e: any(isinstance(x, str) and x.startswith(pre) for x in _values(v))), []
    if op in ("gt", "gte", "lt", "lte"):
        if isinstance(arg, bool) or not isinstance(arg, int | float):
            raise ConditionError(f"{where}: '{op}' needs a number")
        cmp = {"gt": lambda x: x > arg, "gte": lambda x: x >= arg, "lt": lambda x: x < arg, "lte": lambda x: x <= arg}[
            op
        ]
        return (
            lambda v, e: any(isinstance(x, int | float) and not isinstance(x, bool) and cmp(x) for x in _values(v))
        ), []
    if op == "exists":
        want = bool(arg)
        return (lambda v, e: (len(_values(v)) > 0 and v != "") == want), []
    if op in ("ref", "contains_ref"):
        if not isinstance(arg, str) or "." not in arg:
            raise ConditionError(f"{where}: '{op}' needs 'step_name.field'")
        name = arg
        if op == "ref":

            def p_ref(v: Any, e: dict[str, Any] | None) -> bool:
                if e is None or name not in e:
                    return False
                want = {_norm_text(x) for x in _values(e[name])}
                return any(_norm_text(x) in want for x in _values(v))

            return p_ref, [name]

        def p_cref(v: Any, e: dict[str, Any] | None) -> bool:
            if e is None or name not in e:
                return False
            needles = [_norm_text(x) for x in _values(e[name]) if _norm_text(x)]
            if needles:
                for x in _values(v):
                    if isinstance(x, str):
                        for n in needles:
                            if n in x:
                                return True
            return False

        return p_cref, [name]
    raise ConditionError(f"{where}: unknown operator {op!r}; known: {', '.join(OPS)}")


class Node:
    refs: list[str]

    def test(self, c: Ctx, env: dict[str, Any] | None = None) -> bool:
        raise NotImplementedError

    def tri(self, c: Ctx) -> bool | None:
        raise NotImplementedError


# Every node's `test` is a closure built once at construction (an instance attribute that
# shadows the method): no per-event generator, attribute lookups or loops over one element.
Test = Callable[..., bool]


class Leaf(Node):
    def __init__(self, field: str, get: Callable[[Ctx], Any], preds: list[Pred], refs: list[str]) -> None:
        self.field = field
        self.get = get
        self.preds = preds
        self.static = field in STATIC_FIELDS and not refs
        self.refs = refs
        if len(preds) == 1:
            p = preds[0]
            self.test = lambda c, env=None: p(get(c), env)  # type: ignore[method-assign]
        else:

            def test(c: Ctx, env: dict[str, Any] | None = None) -> bool:
                v = get(c)
                return all(p(v, env) for p in preds)

            self.test = test  # type: ignore[method-assign]

    def tri(self, c: Ctx) -> bool | None:
        return bool(self.test(c)) if self.static else None


def _all_test(tests: list[Test]) -> Test:
    if not tests:
        return lambda c, env=None: True
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        a, b = tests
        return lambda c, env=None: a(c, env) and b(c, env)
    if len(tests) == 3:
        a, b, d = tests
        return lambda c, env=None: a(c, env) and b(c, env) and d(c, env)
    return lambda c, env=None: all(t(c, env) for t in tests)


def _any_test(tests: list[Test]) -> Test:
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        a, b = tests
        return lambda c, env=None: a(c, env) or b(c, env)
    return lambda c, env=None: any(t(c, env) for t in tests)


class All(Node):
    def __init__(self, kids: list[Node]) -> None:
        self.kids = kids
        self.refs = [r for k in kids for r in k.refs]
        self.test = _all_test([k.test for k in kids])  # type: ignore[method-assign]

    def tri(self, c: Ctx) -> bool | None:
        out: bool | None = True
        for k in self.kids:
            t = k.tri(c)
            if t is False:
                return False
            if t is None:
                out = None
        return out


class AnyOf(Node):
    def __init__(self, kids: list[Node]) -> None:
        self.kids = kids
        self.refs = [r for k in kids for r in k.refs]
        self.test = _any_test([k.test for k in kids])  # type: ignore[method-assign]

    def tri(self, c: Ctx) -> bool | None:
        out: bool | None = False
        for k in self.kids:
            t = k.tri(c)
            if t is True:
                return True
            if t is None:
                out = None
        return out


class Not(Node):
    def __init__(self, kid: Node) -> None:
        self.kid = kid
        self.refs = kid.refs
        t = kid.test
        self.test = lambda c, env=None: not t(c, env)  # type: ignore[method-assign]

    def tri(self, c: Ctx) -> bool | None:
        t = self.kid.tri(c)
        return None if t is None else not t


TRUE = All([])


def residual(node: Node, c: Ctx) -> Node:
    """`node` with every statically decided part folded away (c: the dispatch key's context).
    Only call when node.tri(c) is None."""
    if isinstance(node, Leaf):
        return node
    if isinstance(node, All):
        kids = []
        for k in node.kids:
            t = k.tri(c)
            if t is True:
                continue
            kids.append(residual(k, c) if t is None else k)
        return kids[0] if len(kids) == 1 else All(kids)
    if isinstance(node, AnyOf):
        kids = [residual(k, c) for k in node.kids if k.tri(c) is None]
        return kids[0] if len(kids) == 1 else AnyOf(kids)
    if isinstance(node, Not):
        return Not(residual(node.kid, c))
    return node


def _fast_test(key: str, m: Any) -> Callable[..., bool] | None:
    """Specialised tests for the hot, simple cases on scalar event fields."""
    if key == "dest.external" and isinstance(m, bool):  # the getter returns a bool: eq is identity
        g_external = getter(key)
        return (lambda c, env=None: g_external(c) is True) if m else (lambda c, env=None: g_external(c) is False)
    if key not in EVENT_FIELDS:
        if key == "redacted" and isinstance(m, bool):
            return (
                (lambda c, env=None: bool(c.rec.get("redactions")))
                if m
                else (lambda c, env=None: not c.rec.get("redactions"))
            )
        return None
    if isinstance(m, str):
        return lambda c, env=None: c.rec.get(key) == m
    if isinstance(m, list) and all(isinstance(x, str) for x in m):
        ms = frozenset(m)
        return lambda c, env=None: c.rec.get(key) in ms
    if isinstance(m, dict) and list(m) == ["exists"] and isinstance(m["exists"], bool):
        if m["exists"]:
            return lambda c, env=None: c.rec.get(key) not in (None, "")
        return lambda c, env=None: c.rec.get(key) in (None, "")
    return None


def compile_condition(spec: Any, where: str = "where") -> Node:
    """Compile a condition mapping. Raises ConditionError naming the offending path."""
    if spec is None:
        return TRUE
    if isinstance(spec, list):
        return All([compile_condition(s, f"{where}[{i}]") for i, s in enumerate(spec)])
    if not isinstance(spec, dict):
        raise ConditionError(f"{where}: a condition must be a mapping of field: matcher")
    kids: list[Node] = []
    for key, m in spec.items():
        path = f"{where}.{key}"
        if key == "all":
            if not isinstance(m, list):
                raise ConditionError(f"{path}: needs a list of conditions")
            kids.append(All([compile_condition(s, f"{path}[{i}]") for i, s in enumerate(m)]))
        elif key == "any":
            if not isinstance(m, list) or not m:
                raise ConditionError(f"{path}: needs a non-empty list of conditions")
            kids.append(AnyOf([compile_condition(s, f"{path}[{i}]") for i, s in enumerate(m)]))
        elif key == "not":
            kids.append(Not(compile_condition(m, path)))
        else:
            if not isinstance(key, str) or not known_field(key):
                raise ConditionError(f"{path}: unknown field {key!r}")
            if key == "cap":
                for c in (
                    m
                    if isinstance(m, list)
                    else [m]
                    if isinstance(m, str)
                    else m.get("in", m.get("eq", []))
                    if isinstance(m, dict)
                    else []
                ):
                    if isinstance(c, str) and c not in CAPABILITIES:
                        raise ConditionError(f"{path}: unknown capability {c!r}; known: {', '.join(CAPABILITIES)}")
            preds: list[Pred] = []
            refs: list[str] = []
            if isinstance(m, dict):
                if not m:
                    raise ConditionError(f"{path}: empty matcher")
                for op, arg in m.items():
                    p, r = _op_pred(str(op), arg, path)
                    preds.append(p)
                    refs.extend(r)
            elif isinstance(m, list):
                p, _ = _op_pred("in", m, path)
                preds.append(p)
            else:
                p, _ = _op_pred("eq", m, path)
                preds.append(p)
            leaf = Leaf(key, getter(key), preds, refs)
            fast = _fast_test(key, m)
            if fast is not None:
                leaf.test = fast  # type: ignore[method-assign]
            kids.append(leaf)
    return kids[0] if len(kids) == 1 else All(kids)


def fields_of(spec: Any) -> list[str]:
    """Field names a condition mentions (for lint / capture)."""
    out: list[str] = []
    if isinstance(spec, list):
        for s in spec:
            out.extend(fields_of(s))
    elif isinstance(spec, dict):
        for k, v in spec.items():
            if k in ("all", "any") or k == "not":
                out.extend(fields_of(v))
            else:
                out.append(k)
    return out
