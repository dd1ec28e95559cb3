"""Alerts: a filterable, sortable, paged table; a detail panel with the rule's description and
runbook, entities, evidence events and history; acknowledge / resolve with a note (who and when
are recorded by the alert store); a link into the forensic timeline."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, State, dash_table, dcc, html, no_update
from dash import ctx as dctx

from dashboard import components as C
from dashboard.actions import ActionError
from dashboard.context import Ctx
from dashboard.data import SEVERITIES, STATUSES, DataError, parse_json
from dashboard.timeutil import PRESETS, fmt_age, fmt_ts, iso, to_dt, utcnow

COLUMNS = [
    {"id": "severity", "name": "Severity"}, {"id": "title", "name": "Alert"}, {"id": "rule_id", "name": "Rule"},
    {"id": "status", "name": "Status"}, {"id": "principal", "name": "Principal"}, {"id": "session", "name": "Session"},
    {"id": "match_count", "name": "Matches", "type": "numeric"}, {"id": "last_seen_s", "name": "Last seen (UTC)"},
]
SINCE = {"": "Any time", "1h": "Last hour", "24h": "Last 24 hours", "7d": "Last 7 days", "30d": "Last 30 days"}


def timeline_href(alert: dict) -> str:
    """The forensic timeline at the alert's session (or principal) and time, with the alert in focus."""
    q = {"alert": alert["alert_id"]}
    ent = parse_json(alert.get("entities"), {}) or {}
    session = alert.get("session") or ent.get("session")
    principal = alert.get("principal") or ent.get("principal")
    if session:
        q["session"] = session
    elif principal:
        q["principal"] = principal
    first, last = to_dt(alert.get("first_seen")), to_dt(alert.get("last_seen"))
    if first and last:
        q["from"] = iso(first - timedelta(minutes=15))
        q["to"] = iso(last + timedelta(minutes=15))
    return "/timeline?" + urlencode(q)


def layout(ctx: Ctx, params: dict[str, str]) -> html.Div:
    filters = dbc.Row([
        dbc.Col(dcc.Dropdown(id="al-f-severity", options=[{"label": s.capitalize(), "value": s} for s in SEVERITIES],
                             multi=True, placeholder="Severity"), md=2),
        dbc.Col(dcc.Dropdown(id="al-f-status", options=[{"label": s.capitalize(), "value": s} for s in STATUSES],
                             value=["open", "acknowledged"], multi=True, placeholder="Status"), md=3),
        dbc.Col(dcc.Dropdown(id="al-f-rule", options=[], placeholder="Rule"), md=2),
        dbc.Col(dbc.Input(id="al-f-principal", placeholder="Principal", debounce=True), md=2),
        dbc.Col(dbc.Input(id="al-f-text", placeholder="Search title, id, session", debounce=True), md=2),
        dbc.Col(dbc.Select(id="al-f-since", options=[{"label": v, "value": k} for k, v in SINCE.items()], value=""),
                md=1),
    ], className="g-2 mb-3 tt-filters")
    table = dash_table.DataTable(
        id="al-table", columns=COLUMNS, data=[], page_action="custom", page_current=0,
        page_size=ctx.settings.page_size, page_count=1, sort_action="custom", sort_mode="single",
        sort_by=[{"column_id": "severity", "direction": "desc"}], cell_selectable=True,
        style_cell_conditional=[{"if": {"column_id": "title"}, "maxWidth": "420px", "fontWeight": "500"},
                                {"if": {"column_id": "match_count"}, "textAlign": "right"}],
        style_data_conditional=[
            *({"if": {"filter_query": f'{{severity}} = "{s}"', "column_id": "severity"}, "color": C.SEVERITY_HEX[s],
               "fontWeight": "700", "textTransform": "uppercase", "fontSize": "12px"} for s in SEVERITIES),
            {"if": {"filter_query": '{status} = "resolved"'}, "color": "#868e96"},
            {"if": {"filter_query": '{status} = "open"', "column_id": "status"}, "color": "#c92a2a", "fontWeight": "600"},
            {"if": {"state": "active"}, "backgroundColor": "#e7f1ff", "border": "none"},
        ],
        **C.table_style())
    return html.Div([
        C.page_header("Alerts", "What the detectors raised. Click an alert for its evidence and runbook.",
                      html.Span(id="al-summary", className="tt-updated")),
        dcc.Store(id="al-selected", data=params.get("id")),
        dcc.Store(id="al-version", data=0),
        dcc.Interval(id="al-tick", interval=ctx.settings.refresh_seconds * 1000),  # new alerts appear by themselves
        filters,
        html.Div(id="al-error"),
        dbc.Card(dbc.CardBody([table, html.Div(id="al-empty")]), className="tt-card"),
        dbc.Offcanvas([html.Div(id="al-detail-body"), html.Div(id="al-action-msg", className="mt-2")],
                      id="al-detail", is_open=False, placement="end", scrollable=True, className="tt-detail",
                      title="Alert"),
    ], id="page-alerts")


def _history(history: list[dict]) -> Any:
    if not history:
        return html.Div("No status changes yet.", className="text-body-secondary small")
    return html.Ul([html.Li([C.status_badge(h.get("status")), " by ", html.Strong(h.get("who", "?")), " at ",
                             f"{fmt_ts(h.get('at'))} UTC",
                             html.Div(h.get("note"), className="tt-note") if h.get("note") else None], className="mb-1")
                    for h in history], className="tt-history")


def _evidence_table(events: list[dict]) -> Any:
    if not events:
        return html.Div("The evidence events are not in the store (yet).", className="text-body-secondary small")
    rows = [html.Tr([
        html.Td(fmt_ts(e["ts"])), html.Td(f"{e['server']}/{e['tool']}" if e.get("server") else e["tool"]),
        html.Td(e["decision"], className="text-danger" if e["decision"] == "deny" else ""),
        html.Td(e.get("result") or ""), html.Td(f"{e['chain_id']}:{e['seq']}", className="font-monospace"),
    ], className="tt-evidence-row") for e in events]
    head = html.Thead(html.Tr([html.Th(h) for h in ("Time (UTC)", "Tool", "Decision", "Result", "Chain:seq")]))
    return dbc.Table([head, html.Tbody(rows)], size="sm", striped=True, className="tt-evidence mb-0")


def detail_body(ctx: Ctx, alert: dict) -> Any:
    ent = parse_json(alert.get("entities"), {}) or {}
    evidence = parse_json(alert.get("evidence"), []) or []
    history = parse_json(alert.get("history"), []) or []
    tags = parse_json(alert.get("tags"), []) or []
    context = parse_json(alert.get("context"), {}) or {}
    try:
        events, ev_error = ctx.data.events_by_ref(evidence, limit=50), None
    except DataError as exc:
        events, ev_error = [], str(exc)
    status = alert.get("status") or "open"
    matches = f"{alert.get('match_count', 1)}"
    if alert.get("suppressed_count"):
        matches += f" (+{alert['suppressed_count']} suppressed)"
    total = f" of {alert['evidence_total']}" if alert.get("evidence_total") else ""
    return html.Div([
        html.Div([C.severity_badge(alert.get("severity")), " ", C.status_badge(status),
                  html.Span(alert.get("rule_id"), className="ms-2 font-monospace small text-body-secondary")],
                 className="mb-2"),
        html.H4(alert.get("title"), className="tt-detail-title", id="al-detail-title"),
        dcc.Link("Open in forensic timeline \u2192", href=timeline_href(alert), id="al-timeline-link",
                 className="btn btn-outline-primary btn-sm mb-3"),
        C.facts([
            ("Alert id", html.Code(alert.get("alert_id"))),
            ("First seen", f"{fmt_ts(alert.get('first_seen'))} UTC"),
            ("Last seen", f"{fmt_ts(alert.get('last_seen'))} UTC ({fmt_age(alert.get('last_seen'))})"),
            ("Matches", matches), ("Principal", alert.get("principal") or ent.get("principal")),
            ("Agent", ent.get("agent")), ("Session", alert.get("session") or ent.get("session")),
            ("Server", ent.get("server")), ("Source", ent.get("source")), ("Tools", ", ".join(ent.get("tools") or [])),
            ("Tags", html.Span([dbc.Badge(t, color="light", text_color="dark", className="me-1") for t in tags])),
            ("Score", f"{alert['score']:.2f}" if alert.get("score") is not None else None),
            ("Actual", alert.get("actual")), ("Expected", alert.get("expected")),
        ]),
        html.H6("Description", className="tt-section"),
        dcc.Markdown(alert.get("description") or "_No description in the rule._", className="tt-md"),
        html.H6("Runbook", className="tt-section"),
        dcc.Markdown(alert.get("runbook") or "_No runbook in the rule._", className="tt-md"),
        html.H6(f"Evidence ({len(evidence)}{total})", className="tt-section"),
        C.error_state(ev_error) if ev_error else _evidence_table(events),
        html.Details([html.Summary("Context", className="small"),
                      html.Pre(json.dumps(context, indent=2, default=str), className="tt-pre")]) if context else None,
        html.H6("History", className="tt-section"),
        _history(history),
        html.H6("Change status", className="tt-section"),
        dbc.Textarea(id="al-note", placeholder="Note (what you checked, ticket number, ...)", maxLength=2000,
                     className="mb-2", rows=2),
        html.Div([
            dbc.Button("Acknowledge", id="al-ack", color="warning", size="sm", className="me-2",
                       disabled=status != "open"),
            dbc.Button("Resolve", id="al-resolve", color="success", size="sm", className="me-2",
                       disabled=status == "resolved"),
            dbc.Button("Reopen", id="al-reopen", color="secondary", outline=True, size="sm", disabled=status == "open"),
        ]),
    ])


def register(app: Dash, ctx: Ctx) -> None:
    @app.callback(Output("al-f-rule", "options"), Input("al-version", "data"))
    def _rules(_v: int):
        try:
            return [{"label": r, "value": r} for r in ctx.data.alert_rule_ids()]
        except DataError:
            return []

    @app.callback(
        Output("al-table", "data"), Output("al-table", "page_count"), Output("al-summary", "children"),
        Output("al-error", "children"), Output("al-empty", "children"),
        Input("al-f-severity", "value"), Input("al-f-status", "value"), Input("al-f-rule", "value"),
        Input("al-f-principal", "value"), Input("al-f-text", "value"), Input("al-f-since", "value"),
        Input("al-table", "page_current"), Input("al-table", "sort_by"), Input("al-version", "data"),
        Input("al-tick", "n_intervals"))
    def _table(sev, status, rule, principal, text, since, page, sort_by, _v, _tick):
        f = {"severity": sev, "status": status, "rule_id": rule, "principal": principal, "text": text,
             "since": utcnow() - PRESETS[since] if since in PRESETS else None}
        size = ctx.settings.page_size
        try:
            rows, total = ctx.data.alerts(f, sort_by, page or 0, size)
            in_store = total if not any(f.values()) else ctx.data.alerts({}, None, 0, 1)[1]
        except DataError as exc:
            return [], 1, "", C.error_state(str(exc), "Loosen the filters or reload the page."), None
        for r in rows:
            r["id"] = r["alert_id"]
            r["last_seen_s"] = fmt_ts(r["last_seen"])
        empty = None
        if not in_store:
            empty = C.empty_state("No alerts yet", "The detectors raise alerts as events arrive (`tooltrail serve`, "
                                  "`tooltrail demo`), or replay history with `tooltrail backtest`.", id_="al-none")
        elif not total:
            empty = C.empty_state("No alerts match these filters",
                                  "Clear the severity, status or rule filters, or widen the time range.", id_="al-none")
        summary = f"{C.fmt_int(total)} of {C.fmt_int(in_store)} alerts \u00b7 updated {utcnow().strftime('%H:%M:%S')} UTC"
        return rows, max(1, -(-total // size)), summary, None, empty

    @app.callback(Output("al-selected", "data"), Input("al-table", "active_cell"), prevent_initial_call=True)
    def _select(cell: dict | None):
        return cell.get("row_id") if cell and cell.get("row_id") else no_update

    @app.callback(Output("al-detail-body", "children"), Output("al-detail", "is_open"), Output("al-detail", "title"),
                  Output("al-action-msg", "children", allow_duplicate=True),
                  Input("al-selected", "data"), Input("al-version", "data"), prevent_initial_call="initial_duplicate")
    def _detail(alert_id: str | None, _v: int):
        fresh = dctx.triggered_id != "al-version"
        msg = None if fresh else no_update
        if not alert_id:
            return None, False, "Alert", msg
        try:
            alert = ctx.data.alert(alert_id)
        except DataError as exc:
            return C.error_state(str(exc)), True, "Alert", msg
        if alert is None:
            return (C.empty_state("Alert not found", f"No alert {alert_id!r}: it may belong to another data dir."),
                    True, "Alert", msg)
        return detail_body(ctx, alert), (True if fresh else no_update), "Alert detail", msg

    @app.callback(Output("al-action-msg", "children"), Output("al-version", "data"),
                  Input("al-ack", "n_clicks"), Input("al-resolve", "n_clicks"), Input("al-reopen", "n_clicks"),
                  State("al-selected", "data"), State("al-note", "value"), State("al-version", "data"),
                  prevent_initial_call=True)
    def _act(_a, _r, _o, alert_id, note, version):
        status = {"al-ack": "acknowledged", "al-resolve": "resolved", "al-reopen": "open"}.get(dctx.triggered_id or "")
        if not status or not alert_id or not dctx.triggered or not dctx.triggered[0].get("value"):
            return no_update, no_update
        who = Ctx.user()
        try:
            ctx.actions.set_alert_status(alert_id, status, who, note or "")
            ctx.data.alerts_snapshot.reload()
        except (ActionError, DataError) as exc:
            return dbc.Alert(f"Not changed: {exc}", color="danger", className="py-2"), no_update
        return (dbc.Alert(f"Marked {status} by {who} at {utcnow().strftime('%H:%M:%S')} UTC.", color="success",
                          className="py-2", id="al-action-ok"), (version or 0) + 1)
