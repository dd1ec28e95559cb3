"""Saved queries: named, parameterised SQL files, run through the read-only query layer.

A saved query is a `.sql` file (one SELECT) whose leading comment lines describe it:

    -- title: Events of one session
    -- description: Every event of a session in order.
    -- param: session  text  demo-session        (name, type text|int|float|ts, default)
    select ... from events where session = $session

Parameters are written `$name` in the SQL and bound as query parameters - never pasted into
the SQL text. Types: text, int, float, ts (RFC 3339 time, a date, or relative: "now-2h",
"24h" = 24 hours ago). A parameter without a default is required.

Sources, later ones overriding earlier ones with the same name:
1. built-in: tooltrail/saved_queries/*.sql (shipped with the project)
2. extra directories given by the caller (e.g. the dashboard's own queries / settings)
3. the user directory <data>/queries/*.sql
Names are the file stem: [a-z0-9_][a-z0-9_.-]{0,63}.

This is the one implementation shared by `tooltrail query --saved NAME --param k=v`, the
investigation commands and the dashboard's Query page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BUILTIN_DIR = Path(__file__).parent / "saved_queries"
PARAM_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
NAME_RE = re.compile(r"^[a-z0-9_][a-z0-9_.-]{0,63}$")
TYPES = ("text", "int", "float", "ts")
_HEADER_RE = re.compile(r"^\s*--\s*(title|description|param)\s*:\s*(.*)$")
_REL_RE = re.compile(r"^(?:now)?\s*(?:-\s*)?(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class SavedQueryError(ValueError):
    """Unknown query, bad parameter: the message is safe to show."""


@dataclass
class Param:
    name: str
    type: str = "text"
    default: str = ""

    @property
    def required(self) -> bool:
        return self.default == ""


@dataclass
class SavedQuery:
    name: str
    title: str
    sql: str
    description: str = ""
    params: list[Param] = field(default_factory=list)
    origin: str = "built-in"
    path: str | None = None


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """RFC 3339 / ISO time ('Z' ok; naive = UTC), a date, 'now', or relative 'now-2h' / '-2h' /
    '2h' (that long ago; s, m, h, d, w). ValueError otherwise."""
    s = str(text).strip()
    now = now or datetime.now(UTC)
    if s.lower() == "now":
        return now
    m = _REL_RE.match(s.lower())
    if m:
        return now - timedelta(seconds=float(m.group(1)) * _UNIT_S[m.group(2)])
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"not a time: {text!r} (use e.g. 2026-05-29T11:00:00Z, 2026-05-29, now-2h, 24h)") from exc
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def parse(name: str, text: str, origin: str = "built-in", path: str | None = None) -> SavedQuery:
    title, desc, params, body = name, [], [], []
    for line in text.splitlines():
        m = _HEADER_RE.match(line)
        if m and not body:
            key, val = m.group(1), m.group(2).strip()
            if key == "title":
                title = val
            elif key == "description":
                desc.append(val)
            else:
                parts = val.split(None, 2)
                if parts:
                    typ = parts[1] if len(parts) > 1 else "text"
                    params.append(Param(parts[0], typ if typ in TYPES else "text", parts[2].strip() if len(parts) > 2 else ""))
        elif line.strip() or body:
            body.append(line)
    sql = "\n".join(body).strip().rstrip(";").strip()
    declared = {p.name for p in params}
    for used in _params_in(sql):
        if used not in declared:
            params.append(Param(used))
            declared.add(used)
    return SavedQuery(name=name, title=title, sql=sql, description=" ".join(desc), params=params, origin=origin, path=path)


def _split_literals(sql: str) -> list[str]:
    """Alternating [code, 'literal', code, ...] so parameters inside string literals stay text."""
    return re.split(r"('(?:[^']|'')*')", sql)


def _params_in(sql: str) -> list[str]:
    out: list[str] = []
    for i, piece in enumerate(_split_literals(sql)):
        if i % 2 == 0:
            out.extend(n for n in PARAM_RE.findall(piece) if n not in out)
    return out


def query_dirs(data_dir: str | Path | None = None, extra_dirs: list[str | Path] | None = None) -> list[tuple[str, Path]]:
    dirs: list[tuple[str, Path]] = [("built-in", BUILTIN_DIR)]
    dirs += [("extra", Path(d)) for d in extra_dirs or []]
    if data_dir is not None:
        dirs.append(("user", Path(data_dir) / "queries"))
    return dirs


def list_saved(data_dir: str | Path | None = None, extra_dirs: list[str | Path] | None = None) -> list[SavedQuery]:
    """Every saved query, sorted by name (later sources override earlier ones)."""
    out: dict[str, SavedQuery] = {}
    for origin, d in query_dirs(data_dir, extra_dirs):
        if not d.is_dir():
            continue
        for f in sorted(d.glob("*.sql")):
            if NAME_RE.match(f.stem):
                out[f.stem] = parse(f.stem, f.read_text(encoding="utf-8"), origin, str(f))
    return [out[k] for k in sorted(out)]


def load_saved(name: str, data_dir: str | Path | None = None, extra_dirs: list[str | Path] | None = None) -> SavedQuery:
    if not NAME_RE.match(name):
        raise SavedQueryError(f"invalid saved query name {name!r}")
    found: SavedQuery | None = None
    for origin, d in query_dirs(data_dir, extra_dirs):
        f = d / f"{name}.sql"
        if f.is_file():
            found = parse(name, f.read_text(encoding="utf-8"), origin, str(f))
    if found is None:
        names = ", ".join(q.name for q in list_saved(data_dir, extra_dirs))
        raise SavedQueryError(f"no saved query {name!r} (available: {names or 'none'})")
    return found


def coerce(value: Any, typ: str, name: str) -> Any:
    if value is None or value == "":
        raise SavedQueryError(f"parameter {name!r} needs a value")
    try:
        if typ == "int":
            return int(value)
        if typ == "float":
            return float(value)
        if typ == "ts":
            return value if isinstance(value, datetime) else parse_time(str(value))
    except (TypeError, ValueError) as exc:
        want = {"int": "a whole number", "float": "a number", "ts": "a time like 2026-05-29T11:00:00Z or now-2h"}[typ]
        raise SavedQueryError(f"parameter {name!r} must be {want}") from exc
    return str(value)


def bind(sql: str, values: dict[str, Any], params: list[Param]) -> tuple[str, list[Any]]:
    """Replace `$name` (outside string literals) with `?`; return the SQL and positional values.
    Missing values take the parameter's default; a required one without a value is an error."""
    types = {p.name: p.type for p in params}
    defaults = {p.name: p.default for p in params}
    out: list[Any] = []
    pieces = _split_literals(sql)
    for i, piece in enumerate(pieces):
        if i % 2:
            continue

        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            v = values.get(name)
            if v is None or v == "":
                v = defaults.get(name, "")
            out.append(coerce(v, types.get(name, "text"), name))
            return "?"

        pieces[i] = PARAM_RE.sub(sub, piece)
    return "".join(pieces), out


def prepare(q: SavedQuery, values: dict[str, Any]) -> tuple[str, list[Any]]:
    unknown = sorted(set(values) - {p.name for p in q.params})
    if unknown:
        have = ", ".join(p.name for p in q.params) or "none"
        raise SavedQueryError(f"saved query {q.name!r} has no parameter {', '.join(unknown)} (parameters: {have})")
    return bind(q.sql, values, q.params)


def run_saved(rq: Any, name: str, values: dict[str, Any] | None = None, *, data_dir: str | Path | None = None,
              extra_dirs: list[str | Path] | None = None, **kw: Any) -> Any:
    """Run saved query `name` on a ReadOnlyQuery; returns its pyarrow Table."""
    q = load_saved(name, data_dir, extra_dirs)
    sql, params = prepare(q, values or {})
    return rq.sql(sql, params, **kw)
