"""Login, sessions, CSRF, trusted-proxy header and security headers, through Flask's test client
(the browser tests cover the same paths in Chromium)."""

from __future__ import annotations

import json
import re
import stat

import pytest

from dashboard.app import create_app, users_store
from dashboard.auth import LoginThrottle, SessionStore, safe_next
from dashboard.users import UserStore
from tests.dashboard.fakes import FakeQuery, fake_tables
from tooltrail.config import load_config

PASSWORD = "correct-horse-battery-staple"


def _app(tmp_path, **dash):
    cfg = load_config(None, data_dir=str(tmp_path / "data"), env={})
    cfg = cfg.model_copy(update={"dashboard": cfg.dashboard.model_copy(update=dash)})
    cfg.layout.ensure()
    users_store(cfg).add("analyst", PASSWORD)
    return create_app(cfg, query=FakeQuery(fake_tables(50)))


def _csrf_from_login(client) -> str:
    page = client.get("/login").get_data(as_text=True)
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def _login(client, user="analyst", password=PASSWORD, next_="/"):
    token = _csrf_from_login(client)
    return client.post("/login", data={"username": user, "password": password, "csrf": token, "next": next_})


def _callback_body() -> dict:
    """The page router's callback, as Dash's renderer posts it."""
    return {"output": "..page.children...tt-rendered.data..",
            "outputs": [{"id": "page", "property": "children"}, {"id": "tt-rendered", "property": "data"}],
            "inputs": [{"id": "url", "property": "pathname", "value": "/integrity"},
                       {"id": "url", "property": "search", "value": ""}],
            "state": [{"id": "tt-rendered", "property": "data", "value": None}], "changedPropIds": ["url.pathname"]}


def test_pages_redirect_and_dash_endpoints_refuse_without_session(tmp_path):
    c = _app(tmp_path).server.test_client()
    r = c.get("/alerts?id=x")
    assert r.status_code == 302 and r.headers["Location"].startswith("/login?next=/alerts")
    assert c.get("/_dash-layout").status_code == 401
    assert c.post("/_dash-update-component", json=_callback_body()).status_code == 401
    assert c.get("/login").status_code == 200
    assert c.get("/assets/tooltrail.css").status_code == 200  # static assets are public


def test_login_sets_strict_cookies_and_follows_only_local_next(tmp_path):
    c = _app(tmp_path).server.test_client()
    r = _login(c, next_="//evil.example/phish")
    assert r.status_code == 303 and r.headers["Location"] == "/"
    cookies = r.headers.getlist("Set-Cookie")
    sess = next(h for h in cookies if h.startswith("tooltrail_session="))
    assert "HttpOnly" in sess and "SameSite=Strict" in sess
    csrf = next(h for h in cookies if h.startswith("_csrf_token="))
    assert "HttpOnly" not in csrf and "SameSite=Strict" in csrf
    assert c.get("/_dash-layout").status_code == 200
    assert safe_next("/timeline?session=a") == "/timeline?session=a"
    for bad in ("https://evil.example/", "//evil.example", "/\\evil.example", "", None):
        assert safe_next(bad) == "/"


def test_wrong_password_and_login_csrf_are_refused(tmp_path):
    c = _app(tmp_path).server.test_client()
    r = _login(c, password="wrong-password-123")
    assert r.status_code == 401 and "Wrong user name or password" in r.get_data(as_text=True)
    assert not any(h.startswith("tooltrail_session=") for h in r.headers.getlist("Set-Cookie"))
    r = c.post("/login", data={"username": "analyst", "password": PASSWORD, "csrf": "forged", "next": "/"})
    assert r.status_code == 400


def test_login_throttle_locks_out_after_repeated_failures(tmp_path):
    c = _app(tmp_path, login_max_failures=3).server.test_client()
    for _ in range(3):
        assert _login(c, password="wrong-password-123").status_code == 401
    r = _login(c)  # even the right password is refused during the lockout
    assert r.status_code == 429 and "Too many failed sign-ins" in r.get_data(as_text=True)
    t = LoginThrottle(2)
    t.failed("k")
    assert t.blocked_for("k") == 0
    t.failed("k")
    assert t.blocked_for("k") > 0
    t.succeeded("k")
    assert t.blocked_for("k") == 0


def test_callbacks_need_the_csrf_token_and_same_origin(tmp_path):
    c = _app(tmp_path).server.test_client()
    _login(c)
    token = c.get_cookie("_csrf_token").value
    assert c.post("/_dash-update-component", json=_callback_body()).status_code == 403
    assert c.post("/_dash-update-component", json=_callback_body(), headers={"X-CSRFToken": "nope"}).status_code == 403
    r = c.post("/_dash-update-component", json=_callback_body(),
               headers={"X-CSRFToken": token, "Origin": "http://evil.example"})
    assert r.status_code == 403
    r = c.post("/_dash-update-component", json=_callback_body(),
               headers={"X-CSRFToken": token, "Origin": "http://localhost"})
    assert r.status_code == 200 and "page-integrity" in r.get_data(as_text=True)
    # logout is a POST with the token too
    assert c.post("/logout", data={"csrf": "nope"}).status_code == 403
    assert c.post("/logout", data={"csrf": token}).status_code == 303
    assert c.get("/_dash-layout").status_code == 401


def test_security_headers(tmp_path):
    c = _app(tmp_path, cookie_secure=True).server.test_client()
    for path in ("/login", "/alerts"):
        h = c.get(path).headers
        csp = h["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
        assert "script-src 'self' 'sha256-" in csp and "unsafe-eval" not in csp and "unsafe-inline" not in csp.split(
            "script-src")[1].split(";")[0]
        assert h["X-Frame-Options"] == "DENY" and h["X-Content-Type-Options"] == "nosniff"
        assert h["Referrer-Policy"] == "same-origin" and "max-age" in h["Strict-Transport-Security"]
        assert h["Cache-Control"] == "no-store"
    r = _login(c)
    assert "Secure" in next(h for h in r.headers.getlist("Set-Cookie") if h.startswith("tooltrail_session="))


def test_sessions_expire_idle_and_absolute():
    s = SessionStore(idle_s=0.05, max_s=100)
    sess = s.create("a", "password")
    assert s.get(sess.sid) is sess
    import time

    time.sleep(0.08)
    assert s.get(sess.sid) is None
    s = SessionStore(idle_s=100, max_s=0.05)
    sess = s.create("a", "password")
    time.sleep(0.08)
    assert s.get(sess.sid) is None


def test_removed_user_loses_the_session(tmp_path):
    app = _app(tmp_path)
    c = app.server.test_client()
    _login(c)
    assert c.get("/_dash-layout").status_code == 200
    users_store(app.tooltrail.config).remove("analyst")
    assert c.get("/_dash-layout").status_code == 401


def test_trusted_proxy_header(tmp_path):
    app = _app(tmp_path, trusted_user_header="X-Forwarded-User", trusted_proxies=["10.9.9.9"])
    c = app.server.test_client()
    # from a peer that is not a trusted proxy: refused outright
    r = c.get("/alerts", headers={"X-Forwarded-User": "mallory"})
    assert r.status_code == 403
    # from the proxy: signed in as the asserted user, with a CSRF token for callbacks
    env = {"REMOTE_ADDR": "10.9.9.9"}
    r = c.get("/_dash-layout", headers={"X-Forwarded-User": "pat"}, environ_base=env)
    assert r.status_code == 200 and "pat" in json.dumps(r.get_json())
    token = c.get_cookie("_csrf_token").value
    r = c.post("/_dash-update-component", json=_callback_body(), headers={"X-Forwarded-User": "pat",
                                                                        "X-CSRFToken": token}, environ_base=env)
    assert r.status_code == 200
    assert c.get("/", headers={"X-Forwarded-User": "bad name!"}, environ_base=env).status_code == 403


def test_user_store_hashes_with_argon2_and_0600(tmp_path):
    store = UserStore(tmp_path / "keys" / "dashboard-users.json")
    store.add("analyst", PASSWORD)
    mode = stat.S_IMODE((tmp_path / "keys" / "dashboard-users.json").stat().st_mode)
    assert mode == 0o600
    text = (tmp_path / "keys" / "dashboard-users.json").read_text()
    assert "$argon2id$" in text and PASSWORD not in text
    assert store.verify("analyst", PASSWORD) and not store.verify("analyst", PASSWORD + "x")
    assert not store.verify("ghost", PASSWORD)
    with pytest.raises(ValueError):
        store.add("analyst", PASSWORD)
    with pytest.raises(ValueError):
        store.add("eve", "short")
    with pytest.raises(ValueError):
        store.add("bad name", PASSWORD)
    store.add("analyst", PASSWORD + "2", replace=True)
    assert store.verify("analyst", PASSWORD + "2")


def test_users_cli(tmp_path, monkeypatch, capsys):
    import io

    from tooltrail.cli import main

    data = str(tmp_path / "d")
    # main() would point structlog at this test's captured stderr, closed after the test
    monkeypatch.setattr("tooltrail.cli.configure_logging", lambda *a, **k: None)
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["--data-dir", data, "users", "add", "bob", "--password-stdin"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["--data-dir", data, "users", "add", "eve", "--password-stdin"]) == 2
    assert main(["--data-dir", data, "users", "list"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "bob"
    assert stat.S_IMODE((tmp_path / "d" / "keys" / "dashboard-users.json").stat().st_mode) == 0o600
    assert main(["--data-dir", data, "users", "remove", "bob"]) == 0
    assert main(["--data-dir", data, "users", "remove", "bob"]) == 2


def test_deep_links_survive_the_login(tmp_path):
    from urllib.parse import parse_qs, urlsplit

    c = _app(tmp_path).server.test_client()
    target = "/timeline?alert=al_1&session=s-1&from=2026-05-29T11:00:00.000000Z&to=2026-05-29T12:00:00Z"
    r = c.get(target)
    nxt = parse_qs(urlsplit(r.headers["Location"]).query)["next"][0]
    assert nxt == target
    page = c.get(r.headers["Location"]).get_data(as_text=True)
    assert 'name="next" value="/timeline?alert=al_1&amp;session=s-1' in page
    assert _login(c, next_=nxt).headers["Location"] == target


def test_scripts_load_lazily_and_plotly_is_the_partial_bundle(tmp_path):
    c = _app(tmp_path).server.test_client()
    _login(c)
    index = c.get("/").get_data(as_text=True)
    scripts = re.findall(r'<script src="([^"]+)"', index)
    assert scripts and not [s for s in scripts if "plotly" in s or "async-" in s]  # fetched when a page needs them
    r = c.get("/_dash-component-suites/plotly/package_data/plotly.min.js")  # where dcc.Graph fetches plotly.js
    assert r.status_code == 200 and r.get_data()[:60].startswith(b"/**\n* plotly.js (basic - minified)")
    assert len(r.get_data()) < 2_000_000 and r.headers["Cache-Control"] == "no-cache"
    assert c.get(r.request.path, headers={"If-None-Match": r.headers["ETag"]}).status_code == 304
    # Dash fingerprints these URLs (mtime, version): cached for good; pages and data never
    for url in [u for u in re.findall(r'(?:href|src)="([^"]+)"', index) if u.startswith(("/assets/", "/_favicon"))]:
        assert c.get(url).headers["Cache-Control"] == "public, max-age=31536000, immutable", url
    assert c.get("/assets/tooltrail.css").headers["Cache-Control"] == "no-cache"  # the login page's, unversioned
    assert c.get("/").headers["Cache-Control"] == "no-store"


def test_layout_carries_the_page_it_is_requested_from(tmp_path):
    c = _app(tmp_path).server.test_client()
    _login(c)
    layout = json.dumps(c.get("/_dash-layout", headers={"Referer": "http://localhost/integrity?x=1"}).get_json())
    assert "page-integrity" in layout and '"/integrity?x=1"' in layout
    for referer in ("http://evil.example/integrity", "http://localhost/nope", None):
        layout = json.dumps(c.get("/_dash-layout", headers={"Referer": referer} if referer else {}).get_json())
        assert "page-integrity" not in layout and "page-overview" not in layout
    # the router's first call for that page leaves it alone (no second render, no second data load) ...
    token = c.get_cookie("_csrf_token").value
    body = _callback_body()
    body["state"][0]["value"] = "/integrity"
    r = c.post("/_dash-update-component", json=body, headers={"X-CSRFToken": token}).get_json()
    assert r["response"] == {"tt-rendered": {"data": None}}
    # ... and renders every later navigation
    r = c.post("/_dash-update-component", json=_callback_body(), headers={"X-CSRFToken": token}).get_json()
    assert "page-integrity" in json.dumps(r["response"]["page"])
