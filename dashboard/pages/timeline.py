"""Forensic timeline: one session (or principal) over a time range. Events on a time axis with a
lane per tool, colour by outcome, deny and redaction markers, overlapping alerts as bands and
their evidence (sequence-rule matches) ringed and joined. Clicking an event shows its stored
record, chain position and a verified inclusion proof. The view exports as an evidence bundle."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, State, dash_table, dcc, html, no_update
from dash import ctx as dctx

from dashboard import components as C
from dashboard.actions import ActionError
from dashboard.context import Ctx
from dashboard.data import DataError, parse_json
from dashboard.timeutil import TimeRange, fmt_ts, iso, parse_dt, to_dt, utcnow

MATCH_COLOURS = ("#7048e8", "#d6336c", "#1098ad", "#f59f00", "#37b24d")
COLUMNS = [
    {"id": "time", "name": "Time (UTC)"},
    {"id": "lane", "name": "Tool"},
    {"id": "decision", "name": "Decision"},
    {"id": "result", "name": "Result"},
    {"id": "session", "name": "Session"},
    {"id": "redactions", "name": "Secrets"},
    {"id": "match", "name": "Alert / sequence match"},
    {"id": "pos", "name": "Chain:seq"},
]


def layout(ctx: Ctx, params: dict[str, str]) -> html.Div:
    # The page comes with its view: one round trip and one drawing of the graph less.
    shown = _view(ctx, params.get("session", ""), params.get("principal", ""), params.get("from", ""),
                  params.get("to", ""), params.get("alert"))
    fig, rows, summary, msg, view, sessions, frm, to, session = (None if v is no_update else v for v in shown)
    controls = dbc.Row(
        [
            dbc.Col(
                [
                    dbc.Label("Session", html_for="tl-session", className="tt-label"),
                    dbc.Input(
                        id="tl-session", value=params.get("session", "") if session is None else session,
                        placeholder="session id", list="tl-sessions",
                    ),
                ],
                md=3,
            ),
            dbc.Col(
                [
                    dbc.Label("or principal", html_for="tl-principal", className="tt-label"),
                    dbc.Input(id="tl-principal", value=params.get("principal", ""), placeholder="principal"),
                ],
                md=2,
            ),
            dbc.Col(
                [
                    dbc.Label("From (UTC)", html_for="tl-from", className="tt-label"),
                    dbc.Input(id="tl-from", value=params.get("from", "") if frm is None else frm,
                              placeholder="2026-05-29T11:00:00Z"),
                ],
                md=2,
            ),
            dbc.Col(
                [
                    dbc.Label("To (UTC)", html_for="tl-to", className="tt-label"),
                    dbc.Input(id="tl-to", value=params.get("to", "") if to is None else to, placeholder="now"),
                ],
                md=2,
            ),
            dbc.Col(
                html.Div(
                    [
                        dbc.Button("Show", id="tl-show", color="primary", className="me-2"),
                        dbc.Button("Export evidence bundle", id="tl-export", color="secondary", outline=True),
                    ],
                    className="d-flex align-items-end h-100",
                ),
                md=3,
            ),
        ],
        className="g-2 mb-3 tt-filters",
    )
    return html.Div(
        [
            C.page_header("Forensic timeline", "What one agent session or principal did, in order, with proof."),
            dcc.Store(id="tl-query", data={"alert": params.get("alert"), "event": params.get("event")}),
            dcc.Store(id="tl-view", data=view),
            dcc.Download(id="tl-download"),
            html.Datalist(sessions, id="tl-sessions"),
            controls,
            html.Div(msg, id="tl-msg"),
            html.Div(summary, id="tl-summary", className="mb-3"),
            dbc.Row(
                [
                    dbc.Col(
                        [
                            C.card(
                                "Events",
                                dcc.Loading(C.graph("tl-graph", fig, height=360), type="dot", delay_show=400),
                                extra=html.Span(
                                    "click an event for its record and proof", className="small text-body-secondary"
                                ),
                                class_name="mb-3",
                            ),
                            C.card(
                                "Event list",
                                html.Div(
                                    [
                                        dash_table.DataTable(
                                            id="tl-table",
                                            columns=COLUMNS,
                                            data=rows or [],
                                            page_action="native",
                                            page_size=ctx.settings.page_size,
                                            sort_action="none",
                                            cell_selectable=True,
                                            style_data_conditional=[
                                                {
                                                    "if": {
                                                        "filter_query": "{decision} = deny",
                                                        "column_id": "decision",
                                                    },
                                                    "color": "#e03131",
                                                    "fontWeight": "600",
                                                },
                                                {
                                                    "if": {
                                                        "filter_query": "{result} = error || {result} = timeout",
                                                        "column_id": "result",
                                                    },
                                                    "color": "#f08c00",
                                                },
                                                {
                                                    "if": {
                                                        "filter_query": "{redactions} != ''",
                                                        "column_id": "redactions",
                                                    },
                                                    "color": "#862e9c",
                                                    "fontWeight": "600",
                                                },
                                                {
                                                    "if": {"filter_query": "{highlight} = 1"},
                                                    "backgroundColor": "#f3f0ff",
                                                },
                                                {"if": {"filter_query": "{focus} = 1"}, "backgroundColor": "#e5dbff"},
                                                {
                                                    "if": {"filter_query": "{highlight} = 1", "column_id": "match"},
                                                    "color": "#5f3dc4",
                                                    "fontWeight": "700",
                                                },
                                                {
                                                    "if": {"state": "active"},
                                                    "backgroundColor": "#e7f1ff",
                                                    "border": "none",
                                                },
                                            ],
                                            **C.table_style(),
                                        ),
                                    ]
                                ),
                            ),
                        ],
                        lg=8,
                    ),
                    dbc.Col(
                        C.card(
                            "Event detail",
                            html.Div(
                                C.empty_state("No event selected", "Click an event on the timeline or in the list."),
                                id="tl-detail",
                            ),
                            class_name="tt-sticky",
                        ),
                        lg=4,
                    ),
                ],
                className="g-3",
            ),
        ],
        id="page-timeline",
    )


def _resolve(
    ctx: Ctx, session: str, principal: str, frm: str, to: str, alert_id: str | None
) -> tuple[TimeRange, str, str, dict | None]:
    alert = None
    if alert_id:
        try:
            alert = ctx.data.alert(alert_id)
        except DataError:
            alert = None
    if alert and not session and not principal:
        ent = parse_json(alert.get("entities"), {}) or {}
        session = alert.get("session") or ent.get("session") or ""
        principal = "" if session else (alert.get("principal") or ent.get("principal") or "")
    start, end = parse_dt(frm), parse_dt(to)
    if alert and (start is None or end is None):
        start = start or to_dt(alert["first_seen"]) - timedelta(minutes=15)
        end = end or to_dt(alert["last_seen"]) + timedelta(minutes=15)
    if (start is None or end is None) and session:
        b = ctx.data.session_bounds(session)
        if b and b.get("first") is not None:
            start = start or to_dt(b["first"]) - timedelta(seconds=1)
            end = end or to_dt(b["last"]) + timedelta(seconds=1)
    end = end or utcnow()
    start = start or end - timedelta(hours=24)
    if start > end:
        start, end = end, start
    return TimeRange(start, end), session, principal, alert


def _lane(e: dict) -> str:
    return f"{e['server']}/{e['tool']}" if e.get("server") else e["tool"]


def _outcome(e: dict) -> str:
    if e["decision"] == "deny":
        return "denied"
    return e.get("result") or "unknown"


def build_view(events: list[dict], alerts: list[dict], focus: str | None = None) -> tuple[dict, list[dict], dict]:
    """The figure, the table rows and summary facts of a timeline view. `focus`: the alert the
    analyst came from; its evidence is highlighted first."""
    evid: dict[tuple[str, int], list[str]] = {}
    evid_ids: dict[str, list[str]] = {}
    alerts = sorted(alerts, key=lambda a: (a.get("alert_id") != focus, str(a.get("first_seen"))))
    for i, a in enumerate(alerts):
        for ref in parse_json(a.get("evidence"), []) or []:
            if ref.get("chain_id") is not None and ref.get("seq") is not None:
                evid.setdefault((ref["chain_id"], int(ref["seq"])), []).append(a["alert_id"])
            elif ref.get("event_id"):
                evid_ids.setdefault(ref["event_id"], []).append(a["alert_id"])
        a["_colour"] = MATCH_COLOURS[i % len(MATCH_COLOURS)]
    rule_of = {a["alert_id"]: a.get("rule_id") or a["alert_id"] for a in alerts}

    def matches(e: dict) -> list[str]:
        return evid.get((e["chain_id"], int(e["seq"])), []) or evid_ids.get(e["event_id"], [])

    lanes = sorted({_lane(e) for e in events})
    rows = []
    for e in events:
        m = matches(e)
        rows.append({
            "id": f"{e['chain_id']}:{e['seq']}", "time": fmt_ts(e["ts"], micro=True)[:-3], "lane": _lane(e),
            "decision": e["decision"], "result": e.get("result") or "", "principal": e.get("principal"),
            "session": e.get("session"),
            "redactions": f"\u25c6 {e['redaction_count']} redacted" if e.get("redaction_count") else "",
            "match": ("\u2605 " + ", ".join(dict.fromkeys(rule_of[x] for x in m))) if m else "",
            "highlight": 1 if m else 0, "focus": 1 if focus and focus in m else 0, "alert_ids": m,
            "pos": f"{e['chain_id']}:{e['seq']}", "chain_id": e["chain_id"], "seq": e["seq"], "ts": iso(e["ts"]),
            "ts_full": fmt_ts(e["ts"], micro=True),
        })

    data: list[dict] = []
    shapes: list[dict] = []
    groups = (("ok", "#2f9e44", "circle", "allowed, ok"), ("error", "#f08c00", "circle", "allowed, error"),
              ("timeout", "#f08c00", "triangle-up", "allowed, timeout"), ("unknown", "#868e96", "circle", "allowed"),
              ("denied", "#e03131", "x", "denied"))
    for key, colour, symbol, name in groups:
        pts = [r for r, e in zip(rows, events, strict=True) if _outcome(e) == key]
        if pts:
            data.append({
                "type": "scatter", "mode": "markers", "name": name, "x": [r["ts_full"] for r in pts],
                "y": [r["lane"] for r in pts], "customdata": [[r["chain_id"], r["seq"], r["ts"]] for r in pts],
                "marker": {"color": colour, "size": 10, "symbol": symbol, "line": {"width": 1, "color": "white"}},
                "text": [f"{r['principal']} \u00b7 {r['decision']} \u00b7 {r['result'] or '-'}" for r in pts],
                "hovertemplate": "%{y}<br>%{x}<br>%{text}<extra></extra>"})
    red = [r for r in rows if r["redactions"]]
    if red:
        data.append({"type": "scatter", "mode": "markers", "name": "secret redacted", "x": [r["ts_full"] for r in red],
                     "y": [r["lane"] for r in red], "customdata": [[r["chain_id"], r["seq"], r["ts"]] for r in red],
                     "marker": {"symbol": "diamond-open", "size": 17, "color": "#862e9c", "line": {"width": 2}},
                     "hovertemplate": "secret redacted before storage: %{y}<extra></extra>"})
    for a in alerts:
        first, last = to_dt(a.get("first_seen")), to_dt(a.get("last_seen"))
        is_focus = a["alert_id"] == focus
        if first and last:
            pad = timedelta(milliseconds=300) if last == first else timedelta(0)
            shapes.append({"type": "rect", "xref": "x", "yref": "paper", "x0": fmt_ts(first - pad, micro=True),
                           "x1": fmt_ts(last + pad, micro=True), "y0": 0, "y1": 1, "fillcolor": a["_colour"],
                           "opacity": 0.12 if is_focus else 0.06, "line": {"width": 0}, "layer": "below"})
        ev = [r for r in rows if a["alert_id"] in r["alert_ids"]]
        if ev:
            title = a.get("title") or a.get("rule_id") or ""
            data.append({
                "type": "scatter", "mode": "markers+lines", "x": [r["ts_full"] for r in ev], "y": [r["lane"] for r in ev],
                "name": ("\u2605 " + title)[:48] + ("\u2026" if len(title) > 46 else ""),
                "line": {"color": a["_colour"], "width": 3 if is_focus else 2, "dash": "dot"},
                "marker": {"symbol": "circle-open", "size": 24 if is_focus else 20, "color": a["_colour"],
                           "line": {"width": 3}},
                "customdata": [[r["chain_id"], r["seq"], r["ts"]] for r in ev],
                "hovertemplate": f"{title[:80]}<br>%{{x}}<extra></extra>"})
    xaxis: dict[str, Any] = {"type": "date"}
    if events:
        t0, t1 = to_dt(events[0]["ts"]), to_dt(events[-1]["ts"])
        pad = max((t1 - t0) * 0.04, timedelta(seconds=2))
        xaxis["range"] = [fmt_ts(t0 - pad, micro=True), fmt_ts(t1 + pad, micro=True)]
    fig = C.figure(data, {
        "height": max(280, min(900, 120 + 36 * len(lanes))), "clickmode": "event", "shapes": shapes,
        "margin": {"l": 170, "r": 16, "t": 10, "b": 40}, "xaxis": xaxis,
        "yaxis": {"type": "category", "categoryorder": "array", "categoryarray": list(reversed(lanes))},
        "legend": {"orientation": "h", "y": -0.12, "yanchor": "top", "x": 0}})
    summary = {
        "events": len(events), "lanes": len(lanes), "denies": sum(1 for e in events if e["decision"] == "deny"),
        "errors": sum(1 for e in events if e.get("result") in ("error", "timeout")), "redacted": len(red),
        "principals": sorted({e["principal"] for e in events if e.get("principal")}),
        "highlighted": sum(1 for r in rows if r["highlight"]), "focus": sum(r["focus"] for r in rows),
        "alerts": len(alerts),
    }
    for r in rows:
        r.pop("alert_ids")
    return fig, rows, summary


def _summary(s: dict, alerts: list[dict], truncated: bool, tr: TimeRange, focus: str | None) -> Any:
    focus_alert = next((a for a in alerts if a.get("alert_id") == focus), None)
    chips = [
        C.kpi("Events", C.fmt_int(s["events"]) + ("+" if truncated else ""), hint=tr.label()),
        C.kpi("Tools", C.fmt_int(s["lanes"]), hint=", ".join(s["principals"][:3])),
        C.kpi("Denied", C.fmt_int(s["denies"]), colour="danger" if s["denies"] else ""),
        C.kpi("Errors", C.fmt_int(s["errors"])),
        C.kpi("Redacted secrets", C.fmt_int(s["redacted"]), colour="primary" if s["redacted"] else ""),
        html.Div(C.kpi("In alert evidence", C.fmt_int(s["highlighted"]),
                       hint=(f"{s['focus']} of the opened alert" if focus_alert else f"{s['alerts']} alerts overlap"),
                       colour="primary" if s["highlighted"] else ""),
                 id="tl-highlight-count", **{"data-count": str(s["highlighted"]), "data-focus": str(s["focus"])}),
    ]
    alert_list = html.Div([
        html.Span("Alerts in view: ", className="small text-body-secondary me-1"),
        *[dcc.Link([C.severity_badge(a.get("severity")), " ", a.get("title") or a.get("rule_id")],
                   href=f"/alerts?id={a['alert_id']}",
                   className="tt-alert-chip me-3" + (" fw-bold" if a.get("alert_id") == focus else ""))
          for a in alerts],
    ], className="mt-2") if alerts else None
    return html.Div([dbc.Row([dbc.Col(c, xs=6, md=4, xl=2) for c in chips], className="g-2"), alert_list])


def event_detail(ctx: Ctx, chain_id: str, seq: int, ts: str | None) -> Any:
    """The record and chain position at once; the inclusion proof fills in by its own callback."""
    try:
        row = ctx.data.event(chain_id, seq, ts)
    except DataError as exc:
        return C.error_state(str(exc))
    if row is None:
        return C.empty_state("Event not found", "It may have been compacted away; run Integrity \u2192 Verify.")
    record = parse_json(row.get("record"), {}) or {}
    return html.Div([
        html.Div([html.Strong(record.get("tool", row.get("tool"))),
                  html.Span(f" \u00b7 {fmt_ts(row['ts'], micro=True)} UTC", className="text-body-secondary")]),
        C.facts([
            ("Event id", html.Code(row.get("event_id"))), ("Principal", row.get("principal")),
            ("Session", row.get("session")), ("Decision", row.get("decision")), ("Result", row.get("result")),
            ("Source", row.get("source")), ("Chain position", html.Code(f"{chain_id} #{seq}", id="tl-chain-pos")),
            ("prev_hash", html.Code(C.short_hash(row.get("prev_hash"), 16), title=row.get("prev_hash"))),
            ("hash", html.Code(C.short_hash(row.get("hash"), 16), title=row.get("hash"))),
        ]),
        dcc.Store(id="tl-proof-ref", data={"chain_id": chain_id, "seq": seq, "ts": ts}),
        dcc.Loading(html.Div(dbc.Alert("Building and verifying the inclusion proof\u2026", color="light",
                                       className="py-2 small"), id="tl-proof"), type="dot"),
        html.H6("Stored record", className="tt-section"),
        html.Pre(json.dumps(record, indent=2, ensure_ascii=False), className="tt-pre tt-record", id="tl-record"),
    ])


def proof_panel(ctx: Ctx, chain_id: str, seq: int, ts: str | None) -> Any:
    try:
        row = ctx.data.event(chain_id, seq, ts)
        if row is None:
            raise ActionError("the event is no longer in the store")
        proof = ctx.actions.event_proof(row)
    except (ActionError, DataError) as exc:
        proof = {"verified": False, "reason": str(exc)}
    if proof.get("verified"):
        cp = proof.get("checkpoint") or {}
        head = dbc.Alert([
            html.Strong("\u2714 Inclusion verified. ", id="tl-proof-ok"),
            f"Leaf {proof.get('index', seq)} of chain {chain_id}'s Merkle tree, signed at size "
            f"{C.fmt_int(cp.get('size'))} ({fmt_ts(cp.get('time'))} UTC, key {cp.get('key_id', '')}); "
            f"the audit path of {len(proof.get('path') or [])} hashes leads to the signed root.",
        ], color="success", className="py-2 small")
    elif proof.get("pending"):
        head = dbc.Alert(["\u25f7 Not yet covered by a signed checkpoint: ", proof.get("reason", "")],
                         color="warning", className="py-2 small", id="tl-proof-pending")
    else:
        head = dbc.Alert(["\u2716 No verified inclusion proof: ", proof.get("reason", "unknown")],
                         color="danger", className="py-2 small", id="tl-proof-bad")
    body = None
    if proof.get("path") is not None:
        body = html.Details([html.Summary("Inclusion proof (JSON)", className="small"),
                             html.Pre(json.dumps({k: v for k, v in proof.items() if k != "verified"}, indent=2,
                                                 default=str), className="tt-pre")])
    return html.Div([head, body])


def _view(ctx: Ctx, session: str | None, principal: str | None, frm: str | None, to: str | None,
          alert_id: str | None) -> tuple:
    """The view of a session or principal over a range, in the order of `_show`'s outputs."""
    session, principal = (session or "").strip(), (principal or "").strip()
    blank = (C.empty_figure(""), [], None)
    try:
        tr, session, principal, _alert = _resolve(ctx, session, principal, frm or "", to or "", alert_id)
        if not session and not principal:
            recent = ctx.data.recent_sessions(TimeRange(utcnow() - timedelta(hours=24), utcnow()), limit=30)
            opts = [
                html.Option(value=r["session"], label=f"{r['principal']} \u00b7 {r['n']} events") for r in recent
            ]
            help_ = C.empty_state(
                "Pick a session or a principal",
                "Type a session id (recent ones are suggested) or a principal, then Show. "
                "From an alert, use \u201cOpen in forensic timeline\u201d.",
                id_="tl-pick",
            )
            return (*blank, help_, None, opts, no_update, no_update, no_update)
        limit = ctx.settings.timeline_max_events
        events = ctx.data.timeline(tr, session or None, principal or None, limit)
        alerts = ctx.data.alerts_overlapping(tr, session or None, principal or None)
    except DataError as exc:
        return (
            *blank,
            C.error_state(str(exc), "Check the session id and the time range."),
            None,
            no_update,
            no_update,
            no_update,
            no_update,
        )
    truncated = len(events) > limit
    events = events[:limit]
    who = f"session {session}" if session else f"principal {principal}"
    if not events:
        msg = C.empty_state(
            f"No events for {who} in this range",
            "Check the id (it is case-sensitive) or widen the From / To range.",
            id_="tl-none",
        )
        return (*blank, msg, None, no_update, iso(tr.start), iso(tr.end), session)
    fig, rows, summary = build_view(events, alerts, alert_id)
    msg = (
        dbc.Alert(
            f"Showing the first {limit:,} events: narrow the range to see the rest.",
            color="warning",
            className="py-2",
        )
        if truncated
        else None
    )
    view = {
        "session": session,
        "principal": principal,
        "from": iso(tr.start),
        "to": iso(tr.end),
        "start_full": fmt_ts(tr.start, micro=True),
        "end_full": fmt_ts(tr.end, micro=True),
    }
    return (
        fig,
        rows,
        _summary(summary, alerts, truncated, tr, alert_id),
        msg,
        view,
        no_update,
        iso(tr.start),
        iso(tr.end),
        session,
    )


def register(app: Dash, ctx: Ctx) -> None:
    @app.callback(Output("tl-proof", "children"), Input("tl-proof-ref", "data"))
    def _proof(ref):
        if not ref:
            return no_update
        return proof_panel(ctx, ref["chain_id"], int(ref["seq"]), ref.get("ts"))

    @app.callback(
        Output("tl-graph", "figure"),
        Output("tl-table", "data"),
        Output("tl-summary", "children"),
        Output("tl-msg", "children"),
        Output("tl-view", "data"),
        Output("tl-sessions", "children"),
        Output("tl-from", "value"),
        Output("tl-to", "value"),
        Output("tl-session", "value"),
        Input("tl-show", "n_clicks"),
        Input("tl-session", "n_submit"),
        Input("tl-principal", "n_submit"),
        State("tl-session", "value"),
        State("tl-principal", "value"),
        State("tl-from", "value"),
        State("tl-to", "value"),
        State("tl-query", "data"),
        prevent_initial_call=True,  # the layout comes with the view
    )
    def _show(_n, _s1, _s2, session, principal, frm, to, q):
        return _view(ctx, session, principal, frm, to, (q or {}).get("alert"))

    @app.callback(
        Output("tl-detail", "children"),
        Input("tl-graph", "clickData"),
        Input("tl-table", "active_cell"),
        State("tl-table", "derived_viewport_data"),
        prevent_initial_call=True,
    )
    def _detail(click, cell, page_rows):
        ref = None
        if dctx.triggered_id == "tl-graph" and click and click.get("points"):
            cd = click["points"][0].get("customdata")
            if cd:
                ref = (cd[0], int(cd[1]), cd[2])
        elif dctx.triggered_id == "tl-table" and cell and cell.get("row_id"):
            chain, _, seq = str(cell["row_id"]).rpartition(":")
            ts = next((r.get("ts") for r in page_rows or [] if r.get("id") == cell["row_id"]), None)
            ref = (chain, int(seq), ts)
        if not ref:
            return no_update
        return event_detail(ctx, *ref)

    @app.callback(
        Output("tl-download", "data"),
        Output("tl-msg", "children", allow_duplicate=True),
        Input("tl-export", "n_clicks"),
        State("tl-view", "data"),
        prevent_initial_call=True,
    )
    def _export(n, view):
        if not n:
            return no_update, no_update
        if not view:
            return no_update, dbc.Alert("Show a timeline first, then export it.", color="info", className="py-2")
        tr = TimeRange(parse_dt(view["from"]), parse_dt(view["to"]))
        try:
            name, content = ctx.actions.evidence_bundle(
                ctx.data, tr, view.get("session") or None, view.get("principal") or None, Ctx.user()
            )
        except (ActionError, DataError) as exc:
            return no_update, C.error_state(f"Export failed: {exc}")
        return dict(content=content, filename=name, type="application/json"), dbc.Alert(
            f"Evidence bundle {name} downloaded. Verify it offline with `tooltrail verify-bundle {name}`.",
            color="success",
            className="py-2",
            id="tl-export-ok",
        )
