"""Overview: traffic, deny rate, top talkers, per-principal volume against its expected band,
open alerts by severity. Auto-refresh re-reads the data and leaves the user's choices alone."""

from __future__ import annotations

import contextlib
import statistics
from datetime import UTC, datetime
from typing import Any

import dash_bootstrap_components as dbc
import plotly.graph_objects as go
from dash import Dash, Input, Output, State, dcc, html, no_update

from dashboard import components as C
from dashboard.context import Ctx
from dashboard.data import SEVERITIES, DataError
from dashboard.timeutil import PRESET_LABELS, TimeRange, fmt_age, fmt_ts, preset_range, utcnow


def _bucket_dt(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def layout(ctx: Ctx, params: dict[str, str]) -> html.Div:
    preset = params.get("range") if params.get("range") in PRESET_LABELS else "24h"
    controls = html.Div(
        [
            dbc.Select(
                id="ov-range",
                options=[{"label": v, "value": k} for k, v in PRESET_LABELS.items()],
                value=preset,
                size="sm",
                className="tt-range",
            ),
            dbc.Switch(
                id="ov-auto",
                label=f"Auto-refresh ({ctx.settings.refresh_seconds} s)",
                value=True,
                className="ms-3 mb-0 small",
            ),
            html.Span(id="ov-updated", className="tt-updated ms-3"),
        ],
        className="d-flex align-items-center",
    )
    return html.Div(
        [
            C.page_header("Overview", "Tool-call traffic, authorization decisions and open alerts", controls),
            dcc.Interval(id="ov-tick", interval=ctx.settings.refresh_seconds * 1000, disabled=False),
            html.Div(id="ov-error"),
            dbc.Row(id="ov-kpis", className="g-3 mb-3"),
            dbc.Row(
                [
                    dbc.Col(C.card("Events per interval", C.graph("ov-events"), extra=html.Span(id="ov-bucket")), lg=8),
                    dbc.Col(
                        C.card(
                            "Open alerts by severity",
                            [
                                C.graph("ov-alerts", height=200),
                                dcc.Link("View all alerts \u2192", href="/alerts", className="small"),
                            ],
                        ),
                        lg=4,
                    ),
                ],
                className="g-3 mb-3",
            ),
            dbc.Row(
                [
                    dbc.Col(
                        C.card(
                            "Volume per principal",
                            [
                                dbc.Select(
                                    id="ov-principal",
                                    size="sm",
                                    className="mb-2 tt-select-inline",
                                    options=[],
                                    placeholder="principal",
                                ),
                                C.graph("ov-volume", height=240),
                            ],
                            extra=html.Span("expected band and anomalies", className="text-body-secondary small"),
                        ),
                        lg=8,
                    ),
                    dbc.Col(C.card("Top principals", html.Div(id="ov-top-principal")), lg=4),
                ],
                className="g-3 mb-3",
            ),
            dbc.Row(
                [
                    dbc.Col(C.card("Top tools", html.Div(id="ov-top-tool")), lg=6),
                    dbc.Col(C.card("Top servers", html.Div(id="ov-top-server")), lg=6),
                ],
                className="g-3",
            ),
        ],
        id="page-overview",
    )


def _top_table(rows: list[dict], kind: str) -> Any:
    if not rows:
        return C.empty_state(f"No {kind}s in this range", "Choose a wider time range above.")
    total = max(r["n"] for r in rows) or 1
    body = []
    for r in rows:
        name = r["name"] if r["name"] is not None else "(none)"
        link = dcc.Link(name, href=f"/timeline?principal={name}") if kind == "principal" and r["name"] else name
        body.append(
            html.Tr(
                [
                    html.Td(link, className="tt-top-name"),
                    html.Td(
                        html.Div(
                            html.Div(className="tt-bar-fill", style={"width": f"{100 * r['n'] / total:.0f}%"}),
                            className="tt-bar",
                        ),
                        className="w-50",
                    ),
                    html.Td(C.fmt_int(r["n"]), className="text-end"),
                    html.Td(
                        C.fmt_pct(r["denies"], r["n"]),
                        className="text-end text-danger small" if r["denies"] else "text-end text-body-secondary small",
                        title="deny rate",
                    ),
                ]
            )
        )
    return dbc.Table(html.Tbody(body), size="sm", borderless=True, className="tt-top mb-0")


def _events_figure(ov: dict, tr: TimeRange) -> go.Figure:
    series = ov["series"]
    if not series:
        return C.empty_figure("No events in this time range")
    fig = go.Figure()
    for decision in ("allow", "deny"):
        pts = [r for r in series if r["decision"] == decision]
        fig.add_bar(
            x=[_bucket_dt(r["bucket"]) for r in pts],
            y=[r["n"] for r in pts],
            name=decision,
            marker_color=C.DECISION_HEX[decision],
            hovertemplate="%{x}<br>%{y:,} " + decision + "<extra></extra>",
        )
    fig.update_layout(barmode="stack", bargap=0.1)
    fig.update_xaxes(range=[fmt_ts(tr.start), fmt_ts(tr.end)])
    return C.style_figure(fig)


def _alerts_figure(counts: list[dict]) -> go.Figure:
    live = [r for r in counts if r["status"] in ("open", "acknowledged")]
    if not live:
        return C.empty_figure("No open alerts")
    fig = go.Figure()
    for status, colour in (("open", None), ("acknowledged", "#ced4da")):
        ys = list(reversed(SEVERITIES))
        xs = [sum(r["n"] for r in live if r["severity"] == s and r["status"] == status) for s in ys]
        fig.add_bar(
            y=[s.upper() for s in ys],
            x=xs,
            orientation="h",
            name=status,
            marker_color=colour or [C.SEVERITY_HEX[s] for s in ys],
            hovertemplate="%{y}: %{x} " + status + "<extra></extra>",
        )
    fig.update_layout(barmode="stack", margin={"l": 70, "r": 10, "t": 10, "b": 30})
    return C.style_figure(fig, legend=True)


def expected_band(counts: list[int], window: int = 24) -> list[tuple[float, float, float]]:
    """(expected, low, high) per bucket: trailing median +- 3 scaled MAD of the previous
    `window` buckets, with a Poisson floor so a quiet principal does not get a zero-width band."""
    out = []
    for i in range(len(counts)):
        past = counts[max(0, i - window) : i] or counts[: i + 1]
        med = statistics.median(past)
        mad = statistics.median([abs(x - med) for x in past]) * 1.4826
        width = max(3 * mad, 3 * (med**0.5), 2.0)
        out.append((med, max(0.0, med - width), med + width))
    return out


def _volume_figure(ctx: Ctx, tr: TimeRange, principal: str | None, bucket_s: int) -> go.Figure:
    if not principal:
        return C.empty_figure("No principal selected")
    rows = ctx.data.principal_volume(tr, principal)
    if not rows:
        return C.empty_figure(f"No events for {principal} in this range")
    b_us = bucket_s * 1_000_000
    by = {r["bucket"]: r["n"] for r in rows}
    start = (int(tr.start.timestamp() * 1e6) // b_us) * b_us
    buckets = list(range(start, int(tr.end.timestamp() * 1e6) + 1, b_us))[-2000:]
    counts = [by.get(b, 0) for b in buckets]
    band = expected_band(counts)
    xs = [_bucket_dt(b) for b in buckets]
    fig = go.Figure()
    fig.add_scatter(x=xs, y=[b[2] for b in band], line={"width": 0}, showlegend=False, hoverinfo="skip")
    fig.add_scatter(
        x=xs,
        y=[b[1] for b in band],
        fill="tonexty",
        fillcolor="rgba(13,110,253,0.12)",
        line={"width": 0},
        name="expected band",
        hoverinfo="skip",
    )
    fig.add_scatter(
        x=xs,
        y=[b[0] for b in band],
        line={"color": "#74c0fc", "dash": "dot", "width": 1},
        name="expected",
        hovertemplate="expected %{y:.0f}<extra></extra>",
    )
    fig.update_xaxes(range=[fmt_ts(tr.start), fmt_ts(tr.end)])
    fig.add_scatter(
        x=xs,
        y=counts,
        line={"color": "#1c7ed6", "width": 2},
        name="actual",
        hovertemplate="%{x}<br>%{y:,} events<extra></extra>",
    )
    anomalies = [(x, c) for x, c, b in zip(xs, counts, band, strict=True) if c > b[2]]
    if anomalies:
        fig.add_scatter(
            x=[a[0] for a in anomalies],
            y=[a[1] for a in anomalies],
            mode="markers",
            marker={"color": "#e03131", "size": 9, "symbol": "x"},
            name="outside band",
            hovertemplate="%{x}<br>%{y:,} events: above the expected band<extra></extra>",
        )
    try:
        alerts = ctx.data.alerts_overlapping(tr, None, principal) if ctx.data.has_view("alerts") else []
    except DataError:
        alerts = []
    vol = [a for a in alerts if "volume" in str(a.get("rule_id", "")).lower() or "burst" in str(a.get("rule_id", ""))]
    if vol:
        fig.add_scatter(
            x=[fmt_ts(a["last_seen"]) for a in vol],
            y=[max(counts) * 1.05] * len(vol),
            mode="markers",
            marker={"color": "#862e9c", "size": 11, "symbol": "triangle-down"},
            name="volume alert",
            text=[a.get("title") for a in vol],
            hovertemplate="%{text}<br>%{x}<extra></extra>",
        )
    return C.style_figure(fig)


def register(app: Dash, ctx: Ctx) -> None:
    @app.callback(Output("ov-tick", "disabled"), Input("ov-auto", "value"))
    def _auto(on: bool) -> bool:
        return not on

    @app.callback(
        Output("ov-kpis", "children"),
        Output("ov-events", "figure"),
        Output("ov-bucket", "children"),
        Output("ov-alerts", "figure"),
        Output("ov-top-principal", "children"),
        Output("ov-top-tool", "children"),
        Output("ov-top-server", "children"),
        Output("ov-principal", "options"),
        Output("ov-updated", "children"),
        Output("ov-error", "children"),
        Input("ov-range", "value"),
        Input("ov-tick", "n_intervals"),
        State("ov-principal", "value"),
    )
    def _refresh(preset: str, _tick: int, principal: str | None):
        tr = preset_range(preset or "24h")
        try:
            ov = ctx.data.cached(("overview", preset, int(tr.end.timestamp()) // 5), 5.0, lambda: ctx.data.overview(tr))
            counts = ctx.data.alert_counts() if ctx.data.has_view("alerts") else []
        except DataError as exc:
            err = C.error_state(str(exc), "Check that the data directory is readable, then reload the page.")
            return ([], C.empty_figure(""), "", C.empty_figure(""), None, None, None, [], "", err)
        k = ov["kpi"]
        events = k.get("events") or 0
        open_alerts = sum(r["n"] for r in counts if r["status"] == "open")
        crit = sum(r["n"] for r in counts if r["status"] == "open" and r["severity"] in ("critical", "high"))
        kpis = [
            dbc.Col(x, xs=6, md=4, xl=2)
            for x in (
                C.kpi("Events", C.fmt_int(events), hint=PRESET_LABELS.get(preset, ""), id_="kpi-events"),
                C.kpi(
                    "Deny rate",
                    C.fmt_pct(k.get("denies"), events),
                    hint=f"{C.fmt_int(k.get('denies'))} denied",
                    colour="danger" if events and (k.get("denies") or 0) / events > 0.05 else "",
                ),
                C.kpi("Errors", C.fmt_int(k.get("errors")), hint="error or timeout results"),
                C.kpi("Principals", C.fmt_int(k.get("principals")), hint="distinct (approx.)"),
                C.kpi("Sessions", C.fmt_int(k.get("sessions")), hint="distinct (approx.)"),
                C.kpi(
                    "Open alerts",
                    C.fmt_int(open_alerts),
                    hint=f"{crit} high or critical",
                    colour="danger" if crit else "",
                ),
            )
        ]
        if not events:
            latest = None
            with contextlib.suppress(DataError):
                latest = ctx.data.latest_event_ts()
            hint = (
                f"The latest stored event is from {fmt_ts(latest)} UTC ({fmt_age(latest)}): choose a wider range."
                if latest
                else "No events are stored yet: send events to a collector or run `tooltrail import`."
            )
            kpis.append(dbc.Col(dbc.Alert(hint, color="info", className="mb-0", id="ov-empty"), xs=12))
        opts = [
            {"label": f"{r['name']} ({C.fmt_int(r['n'])})", "value": r["name"]}
            for r in ov["top"]["principal"]
            if r["name"] is not None
        ]
        if principal and principal not in {o["value"] for o in opts}:
            opts.append({"label": principal, "value": principal})
        b = ov["bucket_s"]
        bucket_label = (
            f"per {b // 60} min" if b >= 60 and b < 3600 else (f"per {b // 3600} h" if b >= 3600 else f"per {b} s")
        )
        return (
            kpis,
            _events_figure(ov, tr),
            bucket_label,
            _alerts_figure(counts),
            _top_table(ov["top"]["principal"], "principal"),
            _top_table(ov["top"]["tool"], "tool"),
            _top_table(ov["top"]["server"], "server"),
            opts,
            f"updated {utcnow().strftime('%H:%M:%S')} UTC",
            None,
        )

    @app.callback(
        Output("ov-volume", "figure"),
        Output("ov-principal", "value"),
        Input("ov-range", "value"),
        Input("ov-tick", "n_intervals"),
        Input("ov-principal", "value"),
        Input("ov-principal", "options"),
    )
    def _volume(preset: str, _tick: int, principal: str | None, options: list[dict]):
        tr = preset_range(preset or "24h")
        chosen = principal or (options[0]["value"] if options else None)
        try:
            fig = _volume_figure(ctx, tr, chosen, tr.bucket_seconds())
        except DataError as exc:
            fig = C.empty_figure(f"Could not load: {exc}")
        return fig, (chosen if chosen != principal else no_update)
