"""Saved investigation queries for the Query page: a thin adapter over `tooltrail.saved`, the one
implementation shared with `tooltrail query --saved` and the investigation commands.

Sources, later ones overriding earlier ones with the same name: the project's built-in queries
(`tooltrail/saved_queries/`, the same ones `tooltrail query --saved` runs), the directories in
`dashboard.saved_query_dirs`, and the data dir's `queries/`. A query is a `.sql` file with a
comment header (title, description, `param: NAME TYPE DEFAULT`); parameters are written
`$name` and bound as query parameters, never pasted into the SQL.
"""

from __future__ import annotations

from typing import Any

from tooltrail.saved import PARAM_RE, Param, SavedQuery, SavedQueryError, bind, list_saved

__all__ = ["PARAM_RE", "Param", "SavedQuery", "SavedQueryError", "bind", "load_all"]


def load_all(extra_dirs: list[str] | None = None, data_dir: Any = None) -> dict[str, SavedQuery]:
    """Every saved query by name."""
    return {q.name: q for q in list_saved(data_dir, extra_dirs=list(extra_dirs or []))}
