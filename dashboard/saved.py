"""Saved investigation queries for the Query page.

A saved query is a `.sql` file whose leading comment lines describe it:

    -- title: Exfiltration candidates
    -- description: Sessions that read private data and then wrote outside, per principal.
    -- param: principal  text  alice@example.com   (name, type text|int|ts, default)
    select ... where principal = $principal

Parameters are written `$name` in the SQL and bound as query parameters (never pasted into the
SQL text). Built-in queries ship in `dashboard/queries/`; users add their own directories with
`dashboard.saved_query_dirs`. When the investigation package provides saved queries
(`tooltrail.saved_queries`), those are listed too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dashboard.timeutil import parse_dt

BUILTIN_DIR = Path(__file__).parent / "queries"
PARAM_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
NAME_RE = re.compile(r"^[a-z0-9_][a-z0-9_.-]{0,63}$")


@dataclass
class Param:
    name: str
    type: str = "text"
    default: str = ""


@dataclass
class SavedQuery:
    name: str
    title: str
    sql: str
    description: str = ""
    params: list[Param] = field(default_factory=list)
    origin: str = "built-in"


def parse(name: str, text: str, origin: str = "built-in") -> SavedQuery:
    title, desc, params, body = name, [], [], []
    for line in text.splitlines():
        m = re.match(r"^\s*--\s*(title|description|param)\s*:\s*(.*)$", line)
        if m and not body:
            key, val = m.group(1), m.group(2).strip()
            if key == "title":
                title = val
            elif key == "description":
                desc.append(val)
            else:
                parts = val.split(None, 2)
                params.append(
                    Param(parts[0], parts[1] if len(parts) > 1 else "text", parts[2] if len(parts) > 2 else "")
                )
        elif line.strip() or body:
            body.append(line)
    sql = "\n".join(body).strip().rstrip(";")
    declared = {p.name for p in params}
    for used in PARAM_RE.findall(sql):
        if used not in declared:
            params.append(Param(used))
            declared.add(used)
    return SavedQuery(name=name, title=title, sql=sql, description=" ".join(desc), params=params, origin=origin)


def load_all(extra_dirs: list[str] | None = None) -> dict[str, SavedQuery]:
    out: dict[str, SavedQuery] = {}
    try:  # the investigation package's saved queries, when present
        from tooltrail import saved_queries as shared  # type: ignore[attr-defined]

        for q in shared.list_saved():  # pragma: no cover - depends on another package
            out[q.name] = SavedQuery(
                name=q.name,
                title=getattr(q, "title", q.name),
                sql=q.sql,
                description=getattr(q, "description", ""),
                params=[
                    Param(p.name, getattr(p, "type", "text"), str(getattr(p, "default", "") or ""))
                    for p in getattr(q, "params", [])
                ],
                origin="shared",
            )
    except Exception:  # noqa: S110 - optional source
        pass
    for origin, d in [("built-in", BUILTIN_DIR), *(("user", Path(x)) for x in extra_dirs or [])]:
        if not d.is_dir():
            continue
        for f in sorted(d.glob("*.sql")):
            name = f.stem
            if NAME_RE.match(name):
                out[name] = parse(name, f.read_text(encoding="utf-8"), origin)
    return out


def bind(sql: str, values: dict[str, Any], params: list[Param]) -> tuple[str, list[Any]]:
    """Replace `$name` with `?` (outside string literals) and return the positional values."""
    types = {p.name: p.type for p in params}
    out_params: list[Any] = []
    pieces = re.split(r"('(?:[^']|'')*')", sql)  # keep quoted literals untouched
    for i, piece in enumerate(pieces):
        if i % 2:
            continue

        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in values and name not in types:
                return m.group(0)
            out_params.append(coerce(values.get(name), types.get(name, "text"), name))
            return "?"

        pieces[i] = PARAM_RE.sub(sub, piece)
    return "".join(pieces), out_params


def coerce(value: Any, typ: str, name: str) -> Any:
    if value is None or value == "":
        raise ValueError(f"parameter {name!r} needs a value")
    if typ == "int":
        try:
            return int(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"parameter {name!r} must be a whole number") from exc
    if typ in ("ts", "timestamp", "time"):
        dt = parse_dt(str(value))
        if dt is None:
            raise ValueError(f"parameter {name!r} must be a time like 2026-05-29T11:00:00Z")
        return dt
    return str(value)
