"""Integrity: the last verification per chain, signed checkpoints (signatures checked here), the
unsigned tail of each chain, quarantined input by reason, and a button that verifies now."""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, State, dash_table, dcc, html, no_update

from dashboard import components as C
from dashboard.context import Ctx
from dashboard.data import DataError
from dashboard.timeutil import fmt_age, fmt_ts


def layout(ctx: Ctx, params: dict[str, str]) -> html.Div:
    run = dbc.Button("Run verification now", id="in-run", color="primary")
    loading = {"type": "dot", "delay_show": 400}
    # the verification state is in the layout (a file read), so the tables load at once: no callback before them
    job = ctx.actions.last_verify()
    return html.Div([
        C.page_header("Integrity", "Is every stored event still exactly what was acknowledged?", run),
        dcc.Interval(id="in-tick", interval=1000, disabled=not job["running"]),
        dcc.Store(id="in-version", data=0),
        dbc.Row([
            dbc.Col(C.card("Verification", html.Div(verify_panel(job), id="in-verify")), lg=7),
            dbc.Col(C.card("Quarantine", dcc.Loading(html.Div(id="in-quarantine"), **loading)), lg=5),
        ], className="g-3 mb-3"),
        C.card("Chains", dcc.Loading(html.Div(id="in-chains"), **loading), class_name="mb-3"),
        C.card("Signed checkpoints (latest 50)", dcc.Loading(html.Div(id="in-checkpoints"), **loading)),
    ], id="page-integrity")


def _public_key(ctx: Ctx) -> Any:
    try:
        from ingest.signing import load_public_key

        return load_public_key(ctx.config.layout.keys)
    except Exception:
        return None


def _sig_ok(cp: dict, pub: Any) -> bool | None:
    if pub is None:
        return None
    try:
        from ingest.signing import verify_checkpoint
        from schemas.checkpoint import Checkpoint

        fields = {k: cp[k] for k in Checkpoint.model_fields if k in cp}
        if hasattr(fields.get("time"), "strftime"):
            fields["time"] = fields["time"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return verify_checkpoint(Checkpoint.model_validate(fields), pub)
    except Exception:
        return False


def _chain_rows(report: dict) -> list[dict]:
    chains = report.get("chains")
    if isinstance(chains, dict):
        chains = [{"chain_id": k, **(v if isinstance(v, dict) else {"result": v})} for k, v in chains.items()]
    return chains if isinstance(chains, list) else []


def verify_panel(job: dict) -> Any:
    if job.get("running"):
        total, done = job.get("total") or 0, job.get("done") or 0
        pct = 100.0 * done / total if total else 5.0
        return html.Div(
            [
                html.Div(f"Verifying\u2026 {job.get('message') or ''}", className="mb-2"),
                dbc.Progress(
                    value=pct, label=f"{pct:.0f} %" if total else "", striped=True, animated=True, id="in-progress"
                ),
                html.Div(f"{C.fmt_int(done)} of {C.fmt_int(total)} events" if total else "", className="small mt-1"),
            ]
        )
    if not job.get("started"):
        return C.empty_state(
            "Not verified from the dashboard yet",
            "Press \u201cRun verification now\u201d (or run `tooltrail verify`) to recompute every "
            "hash, the Merkle roots and the checkpoint signatures.",
            id_="in-never",
        )
    report = job.get("report") or {}
    ok = job.get("ok")
    when = job.get("finished") or job.get("started")
    head = dbc.Alert([
        html.Strong("\u2714 Intact. " if ok else "\u2716 Verification FAILED. ", id="in-result"),
        f"Verified by {job.get('by') or 'tooltrail verify'} at {fmt_ts(when)} UTC ({fmt_age(when)}): "
        f"{job.get('message') or ''}. Every hash, chain link, typed column, Merkle root and checkpoint "
        "signature was recomputed.",
        html.Div(job.get("error"), className="small mt-1") if job.get("error") else None,
    ], color="success" if ok else "danger", className="py-2")
    rows = []
    for r in _chain_rows(report):
        problems = r.get("problems") or []
        first = problems[0] if problems else {}
        rows.append({
            "chain_id": r.get("chain_id"), "result": "\u2714 intact" if r.get("ok", not problems) else "\u2716 FAILED",
            "events": r.get("events"), "segments": r.get("segments"), "signed_size": r.get("signed_size"),
            "unsigned_tail": r.get("unsigned_tail"), "first_bad_seq": r.get("first_bad_seq"),
            "first_bad_file": r.get("first_bad_file"),
            "problem": f"{first.get('kind', '')}: {first.get('detail', '')}"[:300] if first else "",
        })
    table = None
    if rows:
        names = {"chain_id": "Chain", "result": "Result", "events": "Events", "segments": "Segments",
                 "signed_size": "Signed size", "unsigned_tail": "Unsigned tail", "first_bad_seq": "First bad seq",
                 "first_bad_file": "File", "problem": "First problem"}
        table = dash_table.DataTable(
            id="in-verify-table", columns=[{"id": k, "name": v} for k, v in names.items()], data=rows[:500],
            style_data_conditional=[{"if": {"filter_query": "{result} contains FAILED"}, "backgroundColor": "#fff5f5",
                                     "color": "#c92a2a"}],
            page_size=20, **C.table_style())
    warnings = report.get("warnings") or []
    extra = html.Ul([html.Li(str(w)) for w in warnings[:20]], className="small text-warning mt-2") if warnings else None
    return html.Div([head, table, extra])


def register(app: Dash, ctx: Ctx) -> None:
    @app.callback(
        Output("in-verify", "children"),
        Output("in-tick", "disabled"),
        Output("in-version", "data"),
        Input("in-run", "n_clicks"),
        Input("in-tick", "n_intervals"),
        State("in-version", "data"),
        prevent_initial_call=True,
    )
    def _verify(n, _tick, version):
        from dash import ctx as dctx

        if dctx.triggered_id == "in-run" and n:
            ctx.actions.start_verify(Ctx.user())
        job = ctx.actions.last_verify()
        finished_now = dctx.triggered_id == "in-tick" and not job["running"]
        return verify_panel(job), not job["running"], (version or 0) + 1 if finished_now else no_update

    @app.callback(
        Output("in-chains", "children"),
        Output("in-checkpoints", "children"),
        Output("in-quarantine", "children"),
        Input("in-version", "data"),
    )
    def _tables(_v):
        pub = _public_key(ctx)
        try:
            stats = ctx.data.chain_stats()
            latest = (
                {c["chain_id"]: c for c in ctx.data.latest_checkpoints()}
            )
            cps = ctx.data.checkpoints(50)
        except DataError as exc:
            err = C.error_state(str(exc), "Reload the page; if it persists run `tooltrail verify` in a shell.")
            return err, None, None
        if not stats:
            chains: Any = C.empty_state(
                "No chains yet", "Events create a chain per collector or partition once stored."
            )
        else:
            rows = []
            for s in stats:
                cp = latest.get(s["chain_id"]) or {}
                size = int(s.get("size") or 0)
                signed = int(cp.get("size") or 0)
                rows.append(
                    {
                        "chain_id": s["chain_id"],
                        "events": s["events"],
                        "signed": signed,
                        "unsigned_tail": max(0, size - signed),
                        "last_checkpoint": f"{fmt_ts(cp.get('time'))} ({fmt_age(cp.get('time'))})" if cp else "none",
                        "last_event": fmt_ts(s.get("last_ts")),
                        "signature": {True: "\u2714 valid", False: "\u2716 INVALID", None: "no key"}[_sig_ok(cp, pub)]
                        if cp
                        else "-",
                    }
                )
            chains = dash_table.DataTable(
                id="in-chain-table",
                columns=[
                    {"id": "chain_id", "name": "Chain"},
                    {"id": "events", "name": "Events", "type": "numeric"},
                    {"id": "signed", "name": "Signed size", "type": "numeric"},
                    {"id": "unsigned_tail", "name": "Unsigned tail", "type": "numeric"},
                    {"id": "last_checkpoint", "name": "Last checkpoint (UTC)"},
                    {"id": "signature", "name": "Signature"},
                    {"id": "last_event", "name": "Last event (UTC)"},
                ],
                data=rows,
                page_size=15,
                style_data_conditional=[
                    {"if": {"filter_query": "{signature} contains INVALID"}, "color": "#e03131"},
                    {
                        "if": {"filter_query": "{unsigned_tail} > 0", "column_id": "unsigned_tail"},
                        "color": "#f08c00",
                        "fontWeight": "600",
                    },
                ],
                **C.table_style(),
            )
        if not cps:
            checkpoints: Any = C.empty_state(
                "No signed checkpoints yet", "Checkpoints are signed every N events or T seconds, and on shutdown."
            )
        else:
            checkpoints = dash_table.DataTable(
                columns=[
                    {"id": c, "name": n}
                    for c, n in (
                        ("chain_id", "Chain"),
                        ("size", "Size"),
                        ("time", "Signed at (UTC)"),
                        ("root", "Merkle root"),
                        ("head", "Chain head"),
                        ("key_id", "Key id"),
                        ("sig", "Signature"),
                    )
                ],
                data=[
                    {
                        "chain_id": c.get("chain_id"),
                        "size": c.get("size"),
                        "time": fmt_ts(c.get("time")),
                        "root": C.short_hash(c.get("root"), 16),
                        "head": C.short_hash(c.get("head"), 16),
                        "key_id": c.get("key_id"),
                        "sig": {True: "\u2714 valid", False: "\u2716 INVALID", None: "no key"}[_sig_ok(c, pub)],
                    }
                    for c in cps
                ],
                page_size=10,
                **C.table_style(),
            )
        try:
            total, reasons = ctx.data.quarantine_summary(50)
        except DataError as exc:
            return chains, checkpoints, C.error_state(str(exc))
        if not total:
            quarantine: Any = C.empty_state(
                "Nothing quarantined", "Rejected input would appear here with its reason.", icon="\u2714"
            )
        else:
            cols = [c for c in ("source", "field", "reason") if reasons and c in reasons[0]]
            quarantine = html.Div(
                [
                    html.Div(
                        [
                            html.Span(C.fmt_int(total), className="tt-kpi-value text-warning me-2"),
                            html.Span("events rejected and kept for review", className="text-body-secondary"),
                        ],
                        className="mb-2",
                        id="in-quarantine-total",
                    ),
                    dash_table.DataTable(
                        columns=[{"id": c, "name": c} for c in cols] + [{"id": "n", "name": "count"}],
                        data=reasons,
                        page_size=10,
                        **C.table_style(),
                    ),
                    html.Div(
                        dcc.Link("Inspect in Query \u2192", href="/query?saved=quarantine_recent"),
                        className="small mt-2",
                    ),
                ]
            )
        return chains, checkpoints, quarantine
