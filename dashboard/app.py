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
import re
import secrets
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, State, dcc, html, no_update, set_props
from flask import Flask, g, has_request_context, request, send_file

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
# plotly.js "basic" (scatter, bar, pie: every trace the pages draw) from the npm package
# plotly.js-basic-dist-min 4.1.1, 1.2 MB instead of the full 4.8 MB bundle that Python's plotly
# ships; dcc.Graph fetches it from this path (fixed in Dash's renderer) the first time a page draws a graph.
PLOTLY_JS = Path(__file__).parent / "vendor" / "plotly-basic.min.js"
PLOTLY_JS_PATH = "_dash-component-suites/plotly/package_data/plotly.min.js"
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


def _shell(page: Any = None, rendered: str | None = None) -> html.Div:
    """The page shell, built per request (the user's CSRF token); `page`: the content of the page
    at `rendered` (path + query), when the layout request already knows which page it is for."""
    return html.Div(
        [
            dcc.Location(id="url", refresh="callback-nav"),
            dcc.Store(id="tt-rendered", data=rendered),
            _navbar(),
            html.Main(dbc.Container(page, id="page", fluid=True, className="tt-page"), className="tt-main"),
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


def _referring_page() -> tuple[str, str] | None:
    """(path, ?query) of the page that requests the layout: the renderer fetches /_dash-layout
    from the page itself, and Referrer-Policy same-origin keeps the full same-origin URL."""
    if not has_request_context() or not request.referrer:
        return None
    ref = urlsplit(request.referrer)
    if ref.netloc != request.host or (ref.path.rstrip("/") or "/") not in PAGES:
        return None
    return ref.path, f"?{ref.query}" if ref.query else ""


def params_of(search: str | None) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs((search or "").lstrip("?")).items() if v}


_POLYFILL_TAG = re.compile(r'<script src="[^"]*/deps/polyfill@[^"]*"></script>\s*')


class _Dash(Dash):
    def interpolate_index(self, **kwargs: Any) -> str:
        # Dash still ships @babel/polyfill (core-js 2) for browsers it no longer supports: ~0.1 s of
        # script on every full load, and it swaps native functions (String.trim, setImmediate for
        # React's scheduler) for its own. Of it, the components only need `regeneratorRuntime`,
        # which assets/00-regenerator-runtime.js provides (regenerator-runtime 0.14.1, MIT).
        kwargs["scripts"] = _POLYFILL_TAG.sub("", kwargs.get("scripts", ""))
        return super().interpolate_index(**kwargs)


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

    app = _Dash(
        "tooltrail.dashboard",
        server=server,
        assets_folder=ASSETS,
        title="ToolTrail",
        update_title=None,
        suppress_callback_exceptions=True,
        serve_locally=True,
        on_error=_on_error,
        enable_mcp=False,
        # Lazy: a page fetches the component chunks it renders (tables, dropdowns, graphs) and
        # plotly.js only when it draws a graph, instead of ~10 MB of scripts on every page load.
        eager_loading=False,
        meta_tags=[{"name": "viewport", "content": "width=device-width, initial-scale=1"}],
    )
    if PLOTLY_JS.is_file():  # else Dash serves its full bundle there
        # more specific than Dash's component-suites route, so it wins; ETag + revalidation (no version in the URL)
        server.add_url_rule(app.config.routes_pathname_prefix + PLOTLY_JS_PATH, "tt_plotly_js",
                            lambda: send_file(PLOTLY_JS, mimetype="text/javascript", conditional=True, etag=True))
    else:
        log.warning("dashboard_plotly_partial_bundle_missing", path=str(PLOTLY_JS))
    ctx = Ctx(config=config, settings=settings, data=DashboardData(config, query), actions=Actions(config))

    def _layout() -> html.Div:
        # The page's content (Overview's and Timeline's with their data) goes into the layout itself:
        # on screen, and its callbacks started, without waiting for `_route`'s round trip.
        here = _referring_page()
        if here is None:
            return _shell()
        try:
            return _shell(_page(*here), here[0] + here[1])
        except Exception as exc:  # `_route` renders it again and reports the error
            log.warning("dashboard_layout_page_failed", error_type=type(exc).__name__, error=str(exc)[:200])
            return _shell()

    def _page(pathname: str | None, search: str | None) -> Any:
        page = PAGES.get((pathname or "/").rstrip("/") or "/")
        if page is None:
            return empty_state("Page not found", dcc.Link("Go to the overview", href="/"), id_="not-found")
        return page.layout(ctx, params_of(search))

    app.layout = _layout

    @app.callback(Output("page", "children"), Output("tt-rendered", "data"), Input("url", "pathname"),
                  Input("url", "search"), State("tt-rendered", "data"))
    def _route(pathname: str | None, search: str | None, rendered: str | None):
        if rendered is None:
            return _page(pathname, search), no_update
        # dcc.Location reporting the URL on load: the layout already holds this page
        here = (pathname or "/") + (search or "")
        return (no_update if rendered == here else _page(pathname, search)), None

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
    ctx = app.tooltrail  # type: ignore[attr-defined]
    t = threading.Thread(target=ctx.data.warm_up, args=(lambda: overview.warm(ctx),), name="tooltrail-warm-up",
                         daemon=True)
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
