"""Overview: traffic, deny rate, top talkers, per-principal volume against its expected band,
open alerts by severity. Auto-refresh re-reads the data and leaves the user's choices alone."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime
from typing import Any

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, dcc, html, no_update
from dash import ctx as dctx

from dashboard import components as C
from dashboard.context import Ctx
from dashboard.data import SEVERITIES, DataError
from dashboard.timeutil import PRESET_LABELS, TimeRange, fmt_age, fmt_ts, preset_range, utcnow

VOLUME_RULE_HINTS = ("volume", "burst", "run-")


def _bucket_dt(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def layout(ctx: Ctx, params: dict[str, str]) -> html.Div:
    preset = params.get("range") if params.get("range") in PRESET_LABELS else "24h"
    # The page comes with its data (usually cached: see `compute`), so it is drawn once, with the
    # data, instead of empty first and again after a callback's round trip.
    (kpis, events, bucket, alerts, top_principal, top_tool, top_server, options, placeholder, volume, updated,
     error) = _view(ctx, preset, None)
    controls = html.Div([
        dbc.Select(id="ov-range", options=[{"label": v, "value": k} for k, v in PRESET_LABELS.items()], value=preset,
                   size="sm", className="tt-range"),
        dbc.Switch(id="ov-auto", label=f"Auto-refresh ({ctx.settings.refresh_seconds} s)", value=True,
                   className="ms-3 mb-0 small"),
        html.Span(updated, id="ov-updated", className="tt-updated ms-3"),
    ], className="d-flex align-items-center")
    return html.Div([
        C.page_header("Overview", "Tool-call traffic, authorization decisions and open alerts", controls),
        dcc.Interval(id="ov-tick", interval=ctx.settings.refresh_seconds * 1000, disabled=False),
        html.Div(error, id="ov-error"),
        dbc.Row(kpis, id="ov-kpis", className="g-3 mb-3"),
        dbc.Row([
            dbc.Col(C.card("Events per interval", C.graph("ov-events", events), extra=html.Span(bucket, id="ov-bucket")),
                    lg=8),
            dbc.Col(C.card("Open alerts by severity", [
                C.graph("ov-alerts", alerts, height=200),
                dcc.Link("View all alerts \u2192", href="/alerts", className="small")]), lg=4),
        ], className="g-3 mb-3"),
        dbc.Row([
            dbc.Col(C.card("Volume per principal", [
                dbc.Select(id="ov-principal", size="sm", className="mb-2 tt-select-inline", options=options,
                           placeholder=placeholder),
                C.graph("ov-volume", volume, height=240),
            ], extra=html.Span("expected band (trailing median \u00b1 3 MAD) and anomalies")), lg=8),
            dbc.Col(C.card("Top principals", html.Div(top_principal, id="ov-top-principal")), lg=4),
        ], className="g-3 mb-3"),
        dbc.Row([
            dbc.Col(C.card("Top tools", html.Div(top_tool, id="ov-top-tool")), lg=6),
            dbc.Col(C.card("Top servers", html.Div(top_server, id="ov-top-server")), lg=6),
        ], className="g-3"),
    ], id="page-overview")


def _top_table(rows: list[dict], kind: str) -> Any:
    if not rows:
        return C.empty_state(f"No {kind}s in this range", "Choose a wider time range above.")
    most = max(r["n"] for r in rows) or 1
    body = []
    for r in rows:
        name = r["name"] if r["name"] is not None else "(none)"
        label: Any = dcc.Link(name, href=f"/timeline?principal={name}") if kind == "principal" and r["name"] else name
        body.append(html.Tr([
            html.Td(label, className="tt-top-name", title=name),
            html.Td(html.Div(html.Div(className="tt-bar-fill", style={"width": f"{100 * r['n'] / most:.0f}%"}),
                             className="tt-bar"), className="w-50"),
            html.Td(C.fmt_int(r["n"]), className="text-end"),
            html.Td(C.fmt_pct(r["denies"], r["n"]), title="deny rate",
                    className="text-end small " + ("text-danger" if r["denies"] else "text-body-secondary")),
        ]))
    return dbc.Table(html.Tbody(body), size="sm", borderless=True, className="tt-top mb-0")


def _events_figure(ov: dict, tr: TimeRange) -> dict:
    series = ov["series"]
    if not series:
        return C.empty_figure("No events in this time range")
    data = []
    for decision in ("allow", "deny"):
        pts = [r for r in series if r["decision"] == decision]
        data.append({"type": "bar", "name": decision, "x": [_bucket_dt(r["bucket"]) for r in pts],
                     "y": [r["n"] for r in pts], "marker": {"color": C.DECISION_HEX[decision]},
                     "hovertemplate": "%{x}<br>%{y:,} " + decision + "<extra></extra>"})
    return C.figure(data, {"barmode": "stack", "bargap": 0.1,
                           "xaxis": {"type": "date", "range": [fmt_ts(tr.start), fmt_ts(tr.end)]}})


def _alerts_figure(counts: list[dict]) -> dict:
    live = [r for r in counts if r["status"] in ("open", "acknowledged")]
    if not live:
        return C.empty_figure("No open alerts")
    ys = list(reversed(SEVERITIES))
    most = max(sum(r["n"] for r in live if r["severity"] == s) for s in ys)
    data = []
    for status in ("open", "acknowledged"):
        xs = [sum(r["n"] for r in live if r["severity"] == s and r["status"] == status) for s in ys]
        data.append({"type": "bar", "orientation": "h", "name": status, "y": [s.upper() for s in ys], "x": xs,
                     "marker": {"color": [C.SEVERITY_HEX[s] for s in ys] if status == "open" else "#ced4da"},
                     "hovertemplate": "%{y}: %{x} " + status + "<extra></extra>"})
    return C.figure(data, {"barmode": "stack", "margin": {"l": 70, "r": 10, "t": 10, "b": 30},
                           "xaxis": {"rangemode": "tozero", "tickformat": "d", **({"dtick": 1} if most <= 8 else {})}},
                    legend=False)


def expected_band(counts: list[int], window: int = 24) -> list[tuple[float, float, float]]:
    """(expected, low, high) per bucket: trailing median +- 3 scaled MAD of the previous
    `window` buckets, with a Poisson floor so a quiet principal does not get a zero-width band."""
    out = []
    for i in range(len(counts)):
        past = counts[max(0, i - window):i] or counts[: i + 1]
        med = statistics.median(past)
        mad = statistics.median([abs(x - med) for x in past]) * 1.4826
        width = max(3 * mad, 3 * (med ** 0.5), 2.0)
        out.append((med, max(0.0, med - width), med + width))
    return out


def _volume(ctx: Ctx, tr: TimeRange, principal: str) -> list[dict]:
    # served stale like the overview it belongs to (same range)
    return ctx.data.cached(("volume", tr.start, tr.end, principal), 5.0, lambda: ctx.data.principal_volume(tr, principal),
                           stale=2.0 * ctx.settings.refresh_seconds)


def compute(ctx: Ctx, preset: str) -> tuple[TimeRange, dict, datetime]:
    """The aggregates of one range, and the volume of its busiest principal (the chart the page
    opens with), so that a refresh or a first visit finds both cached."""
    t = preset_range(preset)
    ov = ctx.data.overview(t)
    busiest = next((r["name"] for r in ov["top"]["principal"] if r["name"] is not None), None)
    if busiest is not None:
        _volume(ctx, t, busiest)
    return t, ov, utcnow()


def warm(ctx: Ctx) -> None:
    """Cache the default Overview (run at start, before the first analyst opens it)."""
    ctx.data.cached(("overview", "24h"), 5.0, lambda: compute(ctx, "24h"))


def _volume_figure(ctx: Ctx, tr: TimeRange, principal: str | None) -> dict:
    if not principal:
        return C.empty_figure("No principal in this range")
    rows = _volume(ctx, tr, principal)
    if not rows:
        return C.empty_figure(f"No events for {principal} in this range")
    b_us = tr.bucket_seconds() * 1_000_000
    by = {r["bucket"]: r["n"] for r in rows}
    start = (int(tr.start.timestamp() * 1e6) // b_us) * b_us
    buckets = list(range(start, int(tr.end.timestamp() * 1e6) + 1, b_us))[-2000:]
    counts = [by.get(b, 0) for b in buckets]
    band = expected_band(counts)
    xs = [_bucket_dt(b) for b in buckets]
    data = [
        {"type": "scatter", "x": xs, "y": [b[2] for b in band], "line": {"width": 0}, "showlegend": False,
         "hoverinfo": "skip"},
        {"type": "scatter", "x": xs, "y": [b[1] for b in band], "fill": "tonexty", "fillcolor": "rgba(13,110,253,0.12)",
         "line": {"width": 0}, "name": "expected band", "hoverinfo": "skip"},
        {"type": "scatter", "x": xs, "y": [b[0] for b in band], "name": "expected",
         "line": {"color": "#74c0fc", "dash": "dot", "width": 1}, "hovertemplate": "expected %{y:.0f}<extra></extra>"},
        {"type": "scatter", "x": xs, "y": counts, "name": "actual", "line": {"color": "#1c7ed6", "width": 2},
         "hovertemplate": "%{x}<br>%{y:,} events<extra></extra>"},
    ]
    outside = [(x, c) for x, c, b in zip(xs, counts, band, strict=True) if c > b[2]]
    if outside:
        data.append({"type": "scatter", "mode": "markers", "name": "outside band", "x": [a[0] for a in outside],
                     "y": [a[1] for a in outside], "marker": {"color": "#e03131", "size": 9, "symbol": "x"},
                     "hovertemplate": "%{x}<br>%{y:,} events: above the expected band<extra></extra>"})
    try:
        alerts = ctx.data.alerts_overlapping(tr, None, principal)
    except DataError:
        alerts = []
    vol = [a for a in alerts if any(h in str(a.get("rule_id", "")).lower() for h in VOLUME_RULE_HINTS)
           or a.get("detector") == "volume"]
    if vol:
        data.append({"type": "scatter", "mode": "markers", "name": "volume alert",
                     "x": [fmt_ts(a["last_seen"]) for a in vol], "y": [max(counts) * 1.05] * len(vol),
                     "text": [a.get("title") for a in vol], "hovertemplate": "%{text}<br>%{x}<extra></extra>",
                     "marker": {"color": "#862e9c", "size": 11, "symbol": "triangle-down"}})
    return C.figure(data, {"xaxis": {"type": "date", "range": [fmt_ts(tr.start), fmt_ts(tr.end)]},
                           "yaxis": {"rangemode": "tozero"}})


def _bucket_label(b: int) -> str:
    if b >= 3600:
        return f"per {b // 3600} h"
    return f"per {b // 60} min" if b >= 60 else f"per {b} s"


def _kpis(k: dict, counts: list[dict], preset: str) -> list:
    events = k.get("events") or 0
    denies = k.get("denies") or 0
    open_alerts = sum(r["n"] for r in counts if r["status"] == "open")
    crit = sum(r["n"] for r in counts if r["status"] == "open" and r["severity"] in ("critical", "high"))
    cards = (
        C.kpi("Events", C.fmt_int(events), hint=PRESET_LABELS.get(preset, ""), id_="kpi-events"),
        C.kpi("Deny rate", C.fmt_pct(denies, events), hint=f"{C.fmt_int(denies)} denied",
              colour="danger" if events and denies / events > 0.05 else ""),
        C.kpi("Errors", C.fmt_int(k.get("errors")), hint="error or timeout results"),
        C.kpi("Principals", C.fmt_int(k.get("principals")), hint="distinct (approx.)"),
        C.kpi("Sessions", C.fmt_int(k.get("sessions")), hint="distinct (approx.)"),
        C.kpi("Open alerts", C.fmt_int(open_alerts), hint=f"{crit} high or critical", colour="danger" if crit else "",
              id_="kpi-alerts"),
    )
    return [dbc.Col(c, xs=6, md=4, xl=2) for c in cards]


def register(app: Dash, ctx: Ctx) -> None:
    @app.callback(Output("ov-tick", "disabled"), Input("ov-auto", "value"), prevent_initial_call=True)
    def _auto(on: bool) -> bool:
        return not on

    @app.callback(
        Output("ov-kpis", "children"), Output("ov-events", "figure"), Output("ov-bucket", "children"),
        Output("ov-alerts", "figure"), Output("ov-top-principal", "children"), Output("ov-top-tool", "children"),
        Output("ov-top-server", "children"), Output("ov-principal", "options"), Output("ov-principal", "placeholder"),
        Output("ov-volume", "figure"), Output("ov-updated", "children"), Output("ov-error", "children"),
        Input("ov-range", "value"), Input("ov-tick", "n_intervals"), Input("ov-principal", "value"),
        prevent_initial_call=True)  # the layout comes with the data
    def _refresh(preset: str, _tick: int, principal: str | None):
        """One round trip per refresh; the user's range and principal are inputs, never outputs."""
        preset = preset or "24h"
        if dctx.triggered_id == "ov-principal":  # only the volume chart depends on the principal
            try:
                fig = _volume_figure(ctx, preset_range(preset), principal)
            except DataError as exc:
                fig = C.empty_figure(f"Could not load: {exc}")
            return (*[no_update] * 9, fig, no_update, no_update)
        return _view(ctx, preset, principal)


def _view(ctx: Ctx, preset: str, principal: str | None) -> tuple:
    """The page's content for a range, in the order of `_refresh`'s outputs."""
    try:
        # aggregates over millions of events: a view computed within two refresh periods is shown
        # at once and recomputed in the background (the next refresh shows the new numbers)
        tr, ov, computed = ctx.data.cached(("overview", preset), 5.0, lambda: compute(ctx, preset),
                                           stale=2.0 * ctx.settings.refresh_seconds)
        counts = ctx.data.alert_counts()
    except DataError as exc:
        err = C.error_state(str(exc), "Check that the data directory is readable, then reload the page.")
        blank = C.empty_figure("")
        return ([], blank, "", blank, None, None, None, [], "principal", blank, "", err)
    kpis = _kpis(ov["kpi"], counts, preset)
    if not ov["kpi"].get("events"):
        latest = None
        try:
            latest = ctx.data.latest_event_ts()
        except DataError:
            latest = None
        hint = (f"The latest stored event is from {fmt_ts(latest)} UTC ({fmt_age(latest)}): choose a wider range."
                if latest else "No events are stored yet: send events to a collector or run `tooltrail import`.")
        kpis.append(dbc.Col(dbc.Alert(hint, color="info", className="mb-0", id="ov-empty"), xs=12))
    tops = ov["top"]
    opts = [{"label": f"{r['name']} ({C.fmt_int(r['n'])})", "value": r["name"]}
            for r in tops["principal"] if r["name"] is not None]
    if principal and principal not in {o["value"] for o in opts}:
        opts.append({"label": principal, "value": principal})
    chosen = principal or (opts[0]["value"] if opts else None)
    placeholder = f"{opts[0]['label']} \u2014 busiest" if opts else "principal"
    try:
        volume = _volume_figure(ctx, tr, chosen)
    except DataError as exc:
        volume = C.empty_figure(f"Could not load: {exc}")
    return (kpis, _events_figure(ov, tr), _bucket_label(ov["bucket_s"]), _alerts_figure(counts),
            _top_table(tops["principal"], "principal"), _top_table(tops["tool"], "tool"),
            _top_table(tops["server"], "server"), opts, placeholder, volume,
            f"updated {computed.strftime('%H:%M:%S')} UTC", None)
