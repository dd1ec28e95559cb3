"""The ToolTrail SOC dashboard: a Dash app on a locked-down Flask server.

    from dashboard.app import create_app, run
    app = create_app(config)          # dash.Dash; app.server is the Flask (WSGI) app
    run(config)                       # serve on dashboard.host:port (127.0.0.1:8050 by default)

Pages: / (Overview), /alerts[?id=ALERT], /timeline?session=S|principal=P[&from=&to=&alert=ALERT],
/integrity, /query[?saved=NAME]. Login at /login; every other path needs a session.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, dcc, html, set_props
from flask import Flask, g

from dashboard.actions import Actions
from dashboard.auth import Auth
from dashboard.components import empty_state
from dashboard.context import Ctx
from dashboard.data import DashboardData
from dashboard.pages import alerts, integrity, overview, query, timeline
from dashboard.users import UserStore, default_users_file
from tooltrail.logs import get_logger

log = get_logger("tooltrail.dashboard")
ASSETS = str(Path(__file__).parent / "assets")
PAGES = {"/": overview, "/alerts": alerts, "/timeline": timeline, "/integrity": integrity, "/query": query}
NAV = (
    ("Overview", "/"),
    ("Alerts", "/alerts"),
    ("Timeline", "/timeline"),
    ("Integrity", "/integrity"),
    ("Query", "/query"),
)


def users_store(config: Any) -> UserStore:
    s = config.dashboard
    return UserStore(Path(s.users_file) if s.users_file else default_users_file(config.layout.keys))


def _navbar() -> dbc.Navbar:
    sess = getattr(g, "tt_session", None)
    user = sess.user if sess else ""
    csrf = sess.csrf if sess else ""
    logout: Any = html.Form(
        [
            dcc.Input(type="hidden", name="csrf", value=csrf, id="tt-logout-csrf"),
            html.Span(user, className="tt-user me-2", id="tt-user"),
            dbc.Button("Sign out", type="submit", size="sm", color="light", outline=True, id="tt-logout"),
        ],
        method="POST",
        action="/logout",
        className="d-flex align-items-center mb-0",
    )
    if sess is not None and sess.via == "proxy":
        logout = html.Span(user, className="tt-user", id="tt-user")
    return dbc.Navbar(
        dbc.Container(
            [
                dcc.Link(
                    [html.Span("\u25c6", className="tt-logo"), " ToolTrail"],
                    href="/",
                    className="navbar-brand tt-brand",
                ),
                dbc.Nav(
                    [
                        dbc.NavItem(dbc.NavLink(label, href=href, active="exact", id=f"nav-{label.lower()}"))
                        for label, href in NAV
                    ],
                    navbar=True,
                    className="me-auto",
                ),
                logout,
            ],
            fluid=True,
        ),
        color="dark",
        dark=True,
        className="tt-navbar",
        sticky="top",
    )


def _shell() -> html.Div:
    """The page shell; a function so that it is built per request with the user's CSRF token."""
    return html.Div(
        [
            dcc.Location(id="url", refresh="callback-nav"),
            _navbar(),
            html.Main(dbc.Container(id="page", fluid=True, className="tt-page"), className="tt-main"),
            dbc.Toast(
                id="tt-toast",
                header="Something went wrong",
                is_open=False,
                dismissable=True,
                icon="danger",
                duration=12000,
                className="tt-toast",
            ),
        ]
    )


def params_of(search: str | None) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs((search or "").lstrip("?")).items() if v}


def create_app(config: Any, *, query: Any = None, users: UserStore | None = None) -> Dash:
    """Build the dashboard. `query` overrides the read layer (default `ReadOnlyQuery(config)`)."""
    settings = config.dashboard
    server = Flask("tooltrail.dashboard")
    server.secret_key = secrets.token_bytes(32)
    server.config.update(MAX_CONTENT_LENGTH=4 * 1024 * 1024, JSON_SORT_KEYS=False)
    auth = Auth(settings, users or users_store(config))
    auth.install(server)

    def _on_error(err: Exception) -> None:
        log.error("dashboard_callback_failed", error_type=type(err).__name__, error=str(err)[:300])
        set_props(
            "tt-toast",
            {
                "is_open": True,
                "children": f"{type(err).__name__}: {str(err)[:200]}. Reload the page; if it persists, "
                "check the dashboard's log.",
            },
        )

    app = Dash(
        "tooltrail.dashboard",
        server=server,
        assets_folder=ASSETS,
        title="ToolTrail",
        update_title=None,
        suppress_callback_exceptions=True,
        serve_locally=True,
        on_error=_on_error,
        enable_mcp=False, eager_loading=True,
        meta_tags=[{"name": "viewport", "content": "width=device-width, initial-scale=1"}],
    )
    ctx = Ctx(config=config, settings=settings, data=DashboardData(config, query), actions=Actions(config))
    app.layout = _shell

    @app.callback(Output("page", "children"), Input("url", "pathname"), Input("url", "search"))
    def _route(pathname: str | None, search: str | None):
        page = PAGES.get((pathname or "/").rstrip("/") or "/")
        if page is None:
            return empty_state("Page not found", dcc.Link("Go to the overview", href="/"), id_="not-found")
        return page.layout(ctx, params_of(search))

    for page in PAGES.values():
        page.register(app, ctx)
    auth.script_hashes = list(app.csp_hashes())
    app.tooltrail = ctx  # type: ignore[attr-defined]
    app.tooltrail_auth = auth  # type: ignore[attr-defined]
    return app


def is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_server(app: Dash, host: str, port: int) -> Any:
    from werkzeug.serving import make_server as _make

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    return _make(host, port, app.server, threaded=True)


def warm_up(app: Dash) -> threading.Thread:
    """Load the views, the alerts snapshot and the default Overview in the background."""
    t = threading.Thread(target=app.tooltrail.data.warm_up, name="tooltrail-warm-up", daemon=True)  # type: ignore[attr-defined]
    t.start()
    return t


def start_background(app: Dash, host: str = "127.0.0.1", port: int = 0, *, warm: bool = False) -> tuple[Any, str]:
    """Serve in a daemon thread (tests, benchmarks, the demo). Returns (server, base URL);
    stop with `server.shutdown()`. `warm`: warm up as `run` does."""
    if warm:
        warm_up(app)
    srv = make_server(app, host, port)
    threading.Thread(target=srv.serve_forever, name="tooltrail-dashboard", daemon=True).start()
    return srv, f"http://{host}:{srv.server_port}"


def run(config: Any, host: str | None = None, port: int | None = None) -> None:
    """Serve the dashboard until interrupted (threaded WSGI server; one process)."""
    settings = config.dashboard
    host = host or settings.host
    port = settings.port if port is None else port
    app = create_app(config)
    store = users_store(config)
    if not store.names() and not settings.trusted_user_header:
        log.warning("dashboard_no_users", hint="create one with: tooltrail users add NAME")
    if not is_loopback(host):
        log.warning(
            "dashboard_public_bind",
            host=host,
            hint="serve it behind a TLS reverse proxy and set dashboard.cookie_secure = true",
        )
    srv = make_server(app, host, port)
    warm_up(app)
    log.info("dashboard_listening", url=f"http://{host}:{srv.server_port}", data_dir=str(config.layout.root))
    try:
        srv.serve_forever()
    finally:
        srv.server_close()
