"""Shared UI pieces: page headers, KPI cards, badges, empty and error states, figure styling."""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import dcc, html

SEVERITY_COLOURS = {"critical": "danger", "high": "danger", "medium": "warning", "low": "info", "info": "secondary"}
SEVERITY_HEX = {"critical": "#842029", "high": "#dc3545", "medium": "#fd7e14", "low": "#0dcaf0", "info": "#6c757d"}
STATUS_COLOURS = {"open": "danger", "acknowledged": "warning", "resolved": "success"}
DECISION_HEX = {"allow": "#2f9e44", "deny": "#e03131"}
OUTCOME_HEX = {"ok": "#2f9e44", "error": "#f08c00", "timeout": "#f08c00", "denied": "#e03131", None: "#868e96"}
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"


def page_header(title: str, subtitle: str = "", actions: Any = None) -> html.Div:
    return html.Div(
        [
            html.Div([html.H1(title, className="tt-h1"), html.Div(subtitle, className="tt-sub")]),
            html.Div(actions, className="tt-actions") if actions is not None else None,
        ],
        className="tt-page-header",
    )


def kpi(label: str, value: Any, *, hint: str = "", colour: str = "", id_: str | None = None) -> dbc.Card:
    props = {"id": id_} if id_ else {}
    return dbc.Card(
        dbc.CardBody(
            [
                html.Div(label, className="tt-kpi-label"),
                html.Div(value, className=f"tt-kpi-value {('text-' + colour) if colour else ''}"),
                html.Div(hint, className="tt-kpi-hint"),
            ]
        ),
        className="tt-kpi h-100",
        **props,
    )


def severity_badge(sev: str | None) -> dbc.Badge:
    s = (sev or "info").lower()
    return dbc.Badge(s.upper(), color=SEVERITY_COLOURS.get(s, "secondary"), className=f"tt-sev tt-sev-{s}")


def status_badge(status: str | None) -> dbc.Badge:
    s = (status or "open").lower()
    return dbc.Badge(s, color=STATUS_COLOURS.get(s, "secondary"), className="tt-status", pill=True)


def empty_state(title: str, what_to_do: Any, *, id_: str | None = None, icon: str = "\u25cb") -> html.Div:
    props = {"id": id_} if id_ else {}
    return html.Div(
        [
            html.Div(icon, className="tt-empty-icon"),
            html.Div(title, className="tt-empty-title"),
            html.Div(what_to_do, className="tt-empty-text"),
        ],
        className="tt-empty",
        **props,
    )


def error_state(message: str, what_to_do: str = "", *, id_: str | None = None) -> dbc.Alert:
    props = {"id": id_} if id_ else {}
    return dbc.Alert(
        [
            html.Strong("Could not load this view. "),
            html.Span(message),
            html.Div(what_to_do, className="mt-1 small") if what_to_do else None,
        ],
        color="danger",
        className="tt-error",
        **props,
    )


def card(title: Any, body: Any, *, extra: Any = None, class_name: str = "", body_class: str = "") -> dbc.Card:
    header = dbc.CardHeader(
        [
            html.Span(title, className="tt-card-title"),
            html.Span(extra, className="tt-card-extra") if extra is not None else None,
        ],
        className="tt-card-header",
    )
    return dbc.Card([header, dbc.CardBody(body, className=body_class)], className=f"tt-card {class_name}")


def graph(id_: str, fig: dict | None = None, height: int = 260) -> dcc.Graph:
    return dcc.Graph(id=id_, figure=fig or empty_figure(""), style={"height": f"{height}px"},
                     config={"displaylogo": False, "responsive": False,
                             "modeBarButtonsToRemove": ["lasso2d", "select2d", "autoScale2d"]})


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


_AXIS = {"gridcolor": "#eef0f3", "linecolor": "#dee2e6", "zeroline": False, "automargin": True,
         "tickfont": {"size": 11}}


def figure(data: list[dict], layout: dict | None = None, *, legend: bool = True) -> dict:
    """A Plotly figure as a plain dict: no graph_objects validation, which costs tens of
    milliseconds per figure (a large share of a page's budget)."""
    base = {
        "font": {"family": FONT, "size": 12, "color": "#343a40"},
        "margin": {"l": 48, "r": 16, "t": 10, "b": 36}, "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)", "showlegend": legend,
        "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0, "font": {"size": 11}},
        "hoverlabel": {"font": {"family": FONT}}, "hovermode": "closest", "uirevision": "keep",
        "xaxis": dict(_AXIS), "yaxis": dict(_AXIS), "colorway": ["#1c7ed6", "#e03131", "#2f9e44", "#f08c00"],
    }
    return {"data": data, "layout": _merge(base, layout or {})}


def empty_figure(message: str) -> dict:
    return figure([], {"xaxis": {"visible": False}, "yaxis": {"visible": False},
                       "annotations": [{"text": message, "showarrow": False, "x": 0.5, "y": 0.5, "xref": "paper",
                                        "yref": "paper", "font": {"size": 13, "color": "#868e96"}}]}, legend=False)


def fmt_int(n: Any) -> str:
    try:
        return f"{int(n):,}"
    except (TypeError, ValueError):
        return "-"


def fmt_pct(a: Any, b: Any) -> str:
    try:
        return f"{100.0 * float(a) / float(b):.1f} %" if b else "-"
    except (TypeError, ValueError):
        return "-"


def short_hash(h: Any, n: int = 12) -> str:
    return (str(h)[:n] + "\u2026") if h else ""


def table_style() -> dict[str, Any]:
    """Common DataTable styling so every table looks the same."""
    return {
        "style_table": {"overflowX": "auto"},
        "style_header": {
            "backgroundColor": "#f1f3f5",
            "fontWeight": "600",
            "border": "none",
            "borderBottom": "1px solid #dee2e6",
            "fontSize": "12px",
            "textTransform": "uppercase",
            "letterSpacing": "0.03em",
            "color": "#495057",
        },
        "style_cell": {
            "fontFamily": FONT,
            "fontSize": "13px",
            "padding": "6px 10px",
            "border": "none",
            "borderBottom": "1px solid #f1f3f5",
            "textAlign": "left",
            "maxWidth": "360px",
            "overflow": "hidden",
            "textOverflow": "ellipsis",
            "whiteSpace": "nowrap",
        },
        "style_data": {"color": "#212529"},
        "css": [{"selector": ".dash-spreadsheet td:hover", "rule": "cursor: pointer;"}],
    }


def facts(items: list[tuple[str, Any]], *, label_cols: int = 4) -> html.Dl:
    """A definition list of the non-empty items."""
    kids: list[Any] = []
    for k, v in items:
        if v in (None, "", [], {}):
            continue
        kids += [html.Dt(k, className=f"col-{label_cols}"), html.Dd(v, className=f"col-{12 - label_cols}")]
    return html.Dl(kids, className="row tt-facts mb-2")
