"""Query: saved investigation queries with parameters, and a read-only SQL box with a row limit
and a timeout. Results show as a table and download as CSV. Every statement goes through the
read-only query layer (single SELECT, no file or network access)."""

from __future__ import annotations

import io
import time
from datetime import date, datetime
from typing import Any

import dash_bootstrap_components as dbc
import pyarrow as pa
import pyarrow.csv as pacsv
from dash import ALL, Dash, Input, Output, State, dash_table, dcc, html, no_update
from dash import ctx as dctx

from dashboard import components as C
from dashboard import saved as S
from dashboard.context import Ctx
from dashboard.data import DataError, _friendly
from tooltrail.logs import get_logger

log = get_logger("tooltrail.dashboard.query")
DEFAULT_SQL = (
    "select principal, tool, decision, count(*) as calls\nfrom events\nwhere ts >= now() - interval 1 day\n"
    "group by all\norder by calls desc"
)


# What a run and a CSV download read from the page: saved query, SQL, its parameters, limits.
_FORM = (State("q-current", "data"), State("q-sql", "value"), State({"type": "q-param", "name": ALL}, "value"),
         State({"type": "q-param", "name": ALL}, "id"), State("q-limit", "value"), State("q-timeout", "value"))


def _param_values(ids: list[dict], values: list[Any]) -> dict[str, Any]:
    return {i["name"]: v for i, v in zip(ids, values, strict=True)}


def _bounded_number(id_: str, label: str, maximum: int, default: int) -> dbc.Col:
    """A labelled number input from 1 to the configured maximum."""
    return dbc.Col(
        dbc.InputGroup(
            [dbc.InputGroupText(label), dbc.Input(id=id_, type="number", min=1, max=maximum, value=min(default, maximum))],
            size="sm",
        ),
        md=4,
    )


def layout(ctx: Ctx, params: dict[str, str]) -> html.Div:
    saved = S.load_all(ctx.settings.saved_query_dirs, ctx.config.data_dir)
    chosen = params.get("saved") if params.get("saved") in saved else None
    items = [
        dbc.ListGroupItem(
            [
                html.Div(q.title, className="fw-semibold"),
                html.Div(q.description, className="small text-body-secondary"),
            ],
            id={"type": "q-saved", "name": q.name},
            action=True,
            n_clicks=0,
            active=q.name == chosen,
            className="tt-saved-item",
        )
        for q in sorted(saved.values(), key=lambda q: q.title)
    ]
    s = ctx.settings
    return html.Div(
        [
            C.page_header("Query", "Read-only SQL over events, alerts, checkpoints and quarantine."),
            dcc.Store(id="q-current", data=chosen),
            dcc.Download(id="q-download"),
            dbc.Row(
                [
                    dbc.Col(
                        C.card(
                            "Saved queries",
                            dbc.ListGroup(items, flush=True)
                            if items
                            else C.empty_state(
                                "No saved queries", "Add .sql files to a directory in dashboard.saved_query_dirs."
                            ),
                            body_class="p-0",
                        ),
                        lg=3,
                    ),
                    dbc.Col(
                        [
                            C.card(
                                html.Span("SQL", id="q-title"),
                                [
                                    html.Div(id="q-desc", className="small text-body-secondary mb-2"),
                                    html.Div(id="q-params", className="mb-2"),
                                    dbc.Textarea(
                                        id="q-sql",
                                        value=saved[chosen].sql if chosen else DEFAULT_SQL,
                                        rows=8,
                                        className="font-monospace tt-sql",
                                        spellCheck=False,
                                    ),
                                    dbc.Row(
                                        [
                                            _bounded_number("q-limit", "Row limit", s.query_row_limit, 500),
                                            _bounded_number("q-timeout", "Timeout (s)", s.query_timeout_s, 10),
                                            dbc.Col(
                                                html.Div(
                                                    [
                                                        dbc.Button(
                                                            "Run",
                                                            id="q-run",
                                                            color="primary",
                                                            size="sm",
                                                            className="me-2",
                                                        ),
                                                        dbc.Button(
                                                            "Download CSV",
                                                            id="q-csv",
                                                            color="secondary",
                                                            outline=True,
                                                            size="sm",
                                                        ),
                                                    ],
                                                    className="text-end",
                                                ),
                                                md=4,
                                            ),
                                        ],
                                        className="g-2 mt-2",
                                    ),
                                    html.Div(
                                        f"Read-only: one SELECT statement; at most {s.query_row_limit:,} rows and "
                                        f"{s.query_timeout_s:g} s.",
                                        className="small text-body-secondary mt-2",
                                    ),
                                ],
                                class_name="mb-3",
                            ),
                            html.Div(id="q-status"),
                            dcc.Loading(html.Div(id="q-result"), type="dot", delay_show=300),
                        ],
                        lg=9,
                    ),
                ],
                className="g-3",
            ),
        ],
        id="page-query",
    )


def _param_inputs(q: S.SavedQuery | None) -> Any:
    if not q or not q.params:
        return None
    return dbc.Row(
        [
            dbc.Col(
                dbc.InputGroup(
                    [
                        dbc.InputGroupText(p.name),
                        dbc.Input(
                            id={"type": "q-param", "name": p.name},
                            value=p.default,
                            placeholder="e.g. now-24h or 2026-05-29T11:00:00Z" if p.type == "ts" else p.type,
                        ),
                    ],
                    size="sm",
                ),
                md=6,
            )
            for p in q.params
        ],
        className="g-2",
    )


def _cell(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, (list, dict)):
        import json

        return json.dumps(v, default=str)[:2000]
    if isinstance(v, bytes):
        return v.hex()[:200]
    return v


def _bounded(value: Any, hi: float, default: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return default
    return max(1.0, min(hi, v))


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(tbl: pa.Table) -> pa.Table:
    """Nested values as JSON text; text cells that a spreadsheet would run as a formula get a
    leading apostrophe (OWASP CSV injection), since tool arguments are attacker-controlled."""
    import json

    cols = {}
    for name, col in zip(tbl.schema.names, tbl.columns, strict=True):
        if pa.types.is_nested(col.type):
            col = pa.array([None if v is None else json.dumps(v, default=str) for v in col.to_pylist()], pa.string())
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            col = pa.array(
                [("'" + v) if isinstance(v, str) and v.startswith(_FORMULA_START) else v for v in col.to_pylist()],
                pa.string(),
            )
        cols[name] = col
    return pa.table(cols)


def register(app: Dash, ctx: Ctx) -> None:
    def saved() -> dict[str, S.SavedQuery]:
        return ctx.data.cached(("saved",), 10.0, lambda: S.load_all(ctx.settings.saved_query_dirs, ctx.config.data_dir))

    @app.callback(
        Output("q-current", "data"),
        Output("q-sql", "value"),
        Output({"type": "q-saved", "name": ALL}, "active"),
        Input({"type": "q-saved", "name": ALL}, "n_clicks"),
        State({"type": "q-saved", "name": ALL}, "id"),
        prevent_initial_call=True,
    )
    def _pick(clicks, ids):
        t = dctx.triggered_id
        if not isinstance(t, dict) or not any(clicks):
            return no_update, no_update, [no_update] * len(ids)
        q = saved().get(t["name"])
        if q is None:
            return no_update, no_update, [no_update] * len(ids)
        return q.name, q.sql, [i["name"] == q.name for i in ids]

    @app.callback(
        Output("q-params", "children"),
        Output("q-title", "children"),
        Output("q-desc", "children"),
        Input("q-current", "data"),
    )
    def _params(name):
        q = saved().get(name) if name else None
        return (
            _param_inputs(q),
            (q.title if q else "SQL"),
            (
                q.description
                if q
                else "Write a SELECT over the views events, alerts, checkpoints and quarantine, or pick a saved query."
            ),
        )

    def _run(name, sql, values, limit, timeout) -> tuple[pa.Table, bool, float]:
        q = saved().get(name) if name else None
        sql = (sql or "").strip().rstrip(";")
        if not sql:
            raise ValueError("Write a SELECT statement first.")
        params: list[Any] = []
        if S.PARAM_RE.search(sql):
            sql, params = S.bind(sql, values, q.params if q else [])
        lim = int(_bounded(limit, ctx.settings.query_row_limit, 500))
        tmo = _bounded(timeout, ctx.settings.query_timeout_s, 10)
        t0 = time.perf_counter()
        try:
            tbl = ctx.data.query.sql(sql, params=params or None, limit=lim + 1, timeout_s=tmo)
        except Exception as exc:  # the read layer refuses writes, files, multiple statements, timeouts
            raise DataError(_friendly(exc)) from exc
        ms = (time.perf_counter() - t0) * 1000
        log.info("dashboard_query", user=Ctx.user(), saved=name, rows=tbl.num_rows, ms=round(ms, 1), sql_len=len(sql))
        truncated = tbl.num_rows > lim
        return tbl.slice(0, lim), truncated, ms

    @app.callback(
        Output("q-result", "children"),
        Output("q-status", "children"),
        Input("q-run", "n_clicks"),
        *_FORM,
        prevent_initial_call=True,
    )
    def _execute(n, name, sql, values, ids, limit, timeout):
        if not n:
            return no_update, no_update
        try:
            tbl, truncated, ms = _run(name, sql, _param_values(ids, values), limit, timeout)
        except (ValueError, DataError) as exc:
            return None, dbc.Alert(
                [html.Strong("Query refused or failed: "), str(exc)], color="danger", className="py-2", id="q-error"
            )
        if tbl.num_rows == 0:
            return C.empty_state(
                "No rows",
                "The query ran but matched nothing: check the parameters or widen the time range.",
                id_="q-empty",
            ), html.Div(f"0 rows in {ms:.0f} ms", className="small text-body-secondary mb-2")
        rows = [{k: _cell(v) for k, v in r.items()} for r in tbl.to_pylist()]
        cols = [{"id": c, "name": c} for c in tbl.schema.names]
        status = html.Div(
            [
                f"{tbl.num_rows:,} rows in {ms:.0f} ms",
                html.Span(" \u2014 row limit reached; raise it or narrow the query.", className="text-warning")
                if truncated
                else None,
            ],
            className="small text-body-secondary mb-2",
            id="q-rowcount",
        )
        table = dash_table.DataTable(
            id="q-table",
            columns=cols,
            data=rows,
            page_action="native",
            page_size=25,
            sort_action="native",
            **C.table_style(),
        )
        return C.card("Result", table), status

    @app.callback(
        Output("q-download", "data"),
        Output("q-status", "children", allow_duplicate=True),
        Input("q-csv", "n_clicks"),
        *_FORM,
        prevent_initial_call=True,
    )
    def _csv(n, name, sql, values, ids, limit, timeout):
        if not n:
            return no_update, no_update
        try:
            tbl, _trunc, _ms = _run(name, sql, _param_values(ids, values), limit, timeout)
        except (ValueError, DataError) as exc:
            return no_update, dbc.Alert(f"CSV not produced: {exc}", color="danger", className="py-2")
        buf = io.BytesIO()
        pacsv.write_csv(csv_safe(tbl), buf)
        fname = f"tooltrail-{name or 'query'}-{time.strftime('%Y%m%d-%H%M%S')}.csv"
        return dcc.send_bytes(buf.getvalue(), fname), no_update
