"""Login, sessions, CSRF and security headers of the dashboard (plain Flask around Dash).

- Local users log in with a password (argon2id hashes, `dashboard.users`), or a trusted
  reverse proxy asserts the user in a header (`trusted_user_header`), accepted only from
  `trusted_proxies` peers.
- Sessions live in this process: a random id in an HttpOnly, SameSite=Strict cookie; they end
  after `session_minutes` idle or `session_max_hours` after login, and on logout or restart.
- Every POST (Dash callbacks included) must carry the session's CSRF token in the
  `X-CSRFToken` header (Dash's renderer sends the `_csrf_token` cookie there) or form field,
  and a same-origin Origin header when the browser sends one.
- Every response carries a strict Content-Security-Policy and the usual hardening headers.
"""

from __future__ import annotations

import hmac
import html
import secrets
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from flask import Flask, Response, g, jsonify, redirect, request

from dashboard.settings import DashboardSettings
from dashboard.users import USERNAME_RE, UserStore
from tooltrail.logs import get_logger

SESSION_COOKIE = "tooltrail_session"
CSRF_COOKIE = "_csrf_token"  # read by Dash's renderer and echoed as X-CSRFToken
CSRF_HEADER = "X-CSRFToken"
LOGIN_COOKIE = "tooltrail_login"
PUBLIC_PREFIXES = ("/assets/", "/_dash-component-suites/")
PUBLIC_PATHS = frozenset({"/login", "/logout", "/_favicon.ico", "/favicon.ico", "/healthz"})
FAILURE_WINDOW_S = 15 * 60
SLOW_REQUEST_S = 0.5

log = get_logger("tooltrail.dashboard.auth")


@dataclass
class Session:
    sid: str
    user: str
    via: str  # "password" | "proxy"
    created: float
    last_seen: float
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))


class SessionStore:
    def __init__(self, idle_s: float, max_s: float) -> None:
        self.idle_s = idle_s
        self.max_s = max_s
        self._lock = threading.Lock()
        self._by_id: dict[str, Session] = {}

    def create(self, user: str, via: str) -> Session:
        now = time.time()
        s = Session(sid=secrets.token_urlsafe(32), user=user, via=via, created=now, last_seen=now)
        with self._lock:
            self._purge(now)
            self._by_id[s.sid] = s
        return s

    def get(self, sid: str | None, *, touch: bool = True) -> Session | None:
        if not sid:
            return None
        now = time.time()
        with self._lock:
            s = self._by_id.get(sid)
            if s is None:
                return None
            if now - s.last_seen > self.idle_s or now - s.created > self.max_s:
                del self._by_id[sid]
                return None
            if touch:
                s.last_seen = now
            return s

    def drop(self, sid: str | None) -> None:
        with self._lock:
            self._by_id.pop(sid or "", None)

    def _purge(self, now: float) -> None:
        dead = [k for k, s in self._by_id.items() if now - s.last_seen > self.idle_s or now - s.created > self.max_s]
        for k in dead:
            del self._by_id[k]


class LoginThrottle:
    """At most `max_failures` failed logins per user name and per peer address in 15 minutes."""

    def __init__(self, max_failures: int) -> None:
        self.max_failures = max_failures
        self._lock = threading.Lock()
        self._fails: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._fails[key]
        while q and now - q[0] > FAILURE_WINDOW_S:
            q.popleft()
        return q

    def blocked_for(self, *keys: str) -> float:
        now = time.time()
        with self._lock:
            waits = [
                FAILURE_WINDOW_S - (now - q[0]) for k in keys if len(q := self._recent(k, now)) >= self.max_failures
            ]
        return max(waits, default=0.0)

    def failed(self, *keys: str) -> None:
        now = time.time()
        with self._lock:
            for k in keys:
                self._recent(k, now).append(now)

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for k in keys:
                self._fails.pop(k, None)


def safe_next(target: str | None) -> str:
    """Only local absolute paths are followed after login (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


def content_security_policy(script_hashes: list[str], secure: bool) -> str:
    scripts = " ".join(["'self'", *script_hashes])
    policy = [
        "default-src 'self'",
        f"script-src {scripts}",
        "style-src 'self' 'unsafe-inline'",  # plotly.js and React set inline styles
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
    if secure:
        policy.append("upgrade-insecure-requests")
    return "; ".join(policy)


_LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in - ToolTrail</title>
<link rel="stylesheet" href="/assets/00-bootstrap.min.css"><link rel="stylesheet" href="/assets/tooltrail.css">
</head><body class="tt-login-body">
<main class="tt-login card shadow-sm">
  <div class="card-body p-4">
    <div class="tt-brand-lg mb-1"><span class="tt-logo">&#9670;</span> ToolTrail</div>
    <p class="text-body-secondary mb-4">Audit log &amp; anomaly detection for AI-agent tool calls</p>
    {message}
    <form method="post" action="/login" autocomplete="on">
      <input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="next" value="{next}">
      <div class="mb-3"><label class="form-label" for="username">User name</label>
        <input class="form-control" id="username" name="username" value="{username}" required autofocus
               autocomplete="username" maxlength="64"></div>
      <div class="mb-3"><label class="form-label" for="password">Password</label>
        <input class="form-control" id="password" name="password" type="password" required
               autocomplete="current-password" maxlength="1024"></div>
      <button class="btn btn-primary w-100" id="login-submit" type="submit">Sign in</button>
    </form>
    <p class="small text-body-secondary mt-4 mb-0">{hint}</p>
  </div>
</main></body></html>"""


class Auth:
    """Installs login/logout routes and the request guard on a Flask app."""

    def __init__(self, settings: DashboardSettings, users: UserStore) -> None:
        self.settings = settings
        self.users = users
        self.sessions = SessionStore(settings.session_minutes * 60.0, settings.session_max_hours * 3600.0)
        self.throttle = LoginThrottle(settings.login_max_failures)
        self.script_hashes: list[str] = []
        self.on_login: Callable[[str], None] | None = None

    # ---------------------------------------------------------------- helpers
    def _cookie(
        self, resp: Response, name: str, value: str, *, http_only: bool = True, max_age: int | None = None
    ) -> None:
        resp.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            secure=self.settings.cookie_secure,
            httponly=http_only,
            samesite="Strict",
        )

    def _login_page(self, *, status: int = 200, message: str = "", username: str = "", next_url: str = "/") -> Response:
        nonce = secrets.token_urlsafe(24)
        hint = (
            "Access is managed by your reverse proxy."
            if self.settings.trusted_user_header and not self.users.names()
            else "No account? An administrator creates one with <code>tooltrail users add NAME</code>."
        )
        body = _LOGIN_PAGE.format(
            message=f'<div class="alert alert-danger py-2" role="alert" id="login-error">{html.escape(message)}</div>'
            if message
            else "",
            csrf=nonce,
            next=html.escape(next_url, quote=True),
            username=html.escape(username, quote=True),
            hint=hint,
        )
        resp = Response(body, status=status, mimetype="text/html")
        self._cookie(resp, LOGIN_COOKIE, nonce, max_age=3600)
        return resp

    def _start_session(self, resp: Response, user: str, via: str) -> Session:
        s = self.sessions.create(user, via)
        self._cookie(resp, SESSION_COOKIE, s.sid)
        self._cookie(resp, CSRF_COOKIE, s.csrf, http_only=False)
        return s

    def _same_origin(self) -> bool:
        """Defence in depth behind the CSRF token: a cross-origin Origin is refused. Browsers
        send `Origin: null` on some same-site form posts; the token decides those."""
        origin = request.headers.get("Origin")
        if origin is None or origin == "null":
            return True
        return urlsplit(origin).netloc == request.host

    def current_user(self) -> str | None:
        s = getattr(g, "tt_session", None)
        return s.user if s else None

    def current_csrf(self) -> str:
        s = getattr(g, "tt_session", None)
        return s.csrf if s else ""

    # ---------------------------------------------------------------- install
    def install(self, server: Flask) -> None:
        server.add_url_rule("/login", "tt_login", self.login, methods=["GET", "POST"])
        server.add_url_rule("/logout", "tt_logout", self.logout, methods=["POST"])
        server.add_url_rule("/healthz", "tt_healthz", lambda: jsonify(ok=True))
        server.before_request(self.guard)
        server.after_request(self.harden)

    def login(self) -> Response:
        if request.method == "GET":
            msg = "Your session ended; please sign in again." if request.args.get("expired") else ""
            return self._login_page(message=msg, next_url=safe_next(request.args.get("next")))
        form = request.form
        username = (form.get("username") or "").strip()[:64]
        next_url = safe_next(form.get("next"))
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        if not nonce or not hmac.compare_digest(nonce, form.get("csrf", "")) or not self._same_origin():
            return self._login_page(
                status=400, message="The sign-in form expired; please try again.", username=username, next_url=next_url
            )
        peer = request.remote_addr or "?"
        keys = (f"user:{username.lower()}", f"peer:{peer}")
        wait = self.throttle.blocked_for(*keys)
        if wait > 0:
            log.warning("dashboard_login_throttled", user=username, peer=peer)
            return self._login_page(
                status=429,
                username=username,
                next_url=next_url,
                message=f"Too many failed sign-ins; try again in {int(wait // 60) + 1} min.",
            )
        if not USERNAME_RE.match(username) or not self.users.verify(username, form.get("password", "")):
            self.throttle.failed(*keys)
            log.warning(
                "dashboard_login_failed", user=username if USERNAME_RE.match(username) else "<invalid>", peer=peer
            )
            return self._login_page(
                status=401, message="Wrong user name or password.", username=username, next_url=next_url
            )
        self.throttle.succeeded(*keys)
        resp = redirect(next_url, code=303)
        self.sessions.drop(request.cookies.get(SESSION_COOKIE))  # no session fixation
        self._start_session(resp, username, "password")
        resp.delete_cookie(LOGIN_COOKIE, path="/")
        log.info("dashboard_login", user=username, peer=peer)
        if self.on_login:
            self.on_login(username)
        return resp

    def logout(self) -> Response:
        sid = request.cookies.get(SESSION_COOKIE)
        s = self.sessions.get(sid, touch=False)
        token = request.form.get("csrf", "") or request.headers.get(CSRF_HEADER, "")
        if s is not None and (not hmac.compare_digest(s.csrf, token) or not self._same_origin()):
            return Response("CSRF check failed", status=403, mimetype="text/plain")
        self.sessions.drop(sid)
        if s:
            log.info("dashboard_logout", user=s.user)
        resp = redirect("/login", code=303)
        resp.delete_cookie(SESSION_COOKIE, path="/")
        resp.delete_cookie(CSRF_COOKIE, path="/")
        return resp

    def guard(self) -> Response | None:
        g.tt_t0 = time.perf_counter()
        path = request.path
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            return None
        session = self.sessions.get(request.cookies.get(SESSION_COOKIE))
        header = self.settings.trusted_user_header
        if header and header in request.headers:
            if request.remote_addr not in self.settings.trusted_proxies:
                log.warning("dashboard_untrusted_user_header", peer=request.remote_addr)
                return Response("user header from an untrusted peer", status=403, mimetype="text/plain")
            asserted = request.headers.get(header, "").strip()
            if not USERNAME_RE.match(asserted):
                return Response("invalid user header", status=403, mimetype="text/plain")
            if session is None or session.user != asserted or session.via != "proxy":
                if session is not None:
                    self.sessions.drop(session.sid)
                session = self.sessions.create(asserted, "proxy")
                g.tt_new_session = session
                log.info("dashboard_login", user=asserted, via="proxy", peer=request.remote_addr)
        if session is not None and session.via == "password" and not self.users.exists(session.user):
            self.sessions.drop(session.sid)  # the user was removed: their sessions end now
            session = None
        if session is None:
            if path.startswith("/_dash-") or request.method != "GET":
                return Response(
                    '{"error": "not signed in", "login": "/login?expired=1"}', status=401, mimetype="application/json"
                )
            target = request.full_path if request.query_string else path
            return redirect(f"/login?next={quote(target, safe='/')}", code=302)
        g.tt_session = session
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            token = request.headers.get(CSRF_HEADER, "") or request.form.get("csrf", "")
            if not hmac.compare_digest(session.csrf, token) or not self._same_origin():
                log.warning("dashboard_csrf_refused", user=session.user, path=path)
                return Response(
                    '{"error": "CSRF check failed; reload the page"}', status=403, mimetype="application/json"
                )
        return None

    def harden(self, resp: Response) -> Response:
        new = getattr(g, "tt_new_session", None)
        if new is not None:
            self._cookie(resp, SESSION_COOKIE, new.sid)
            self._cookie(resp, CSRF_COOKIE, new.csrf, http_only=False)
        else:
            s = getattr(g, "tt_session", None)
            if s is not None and request.cookies.get(CSRF_COOKIE) != s.csrf:
                self._cookie(resp, CSRF_COOKIE, s.csrf, http_only=False)
        h = resp.headers
        h["Content-Security-Policy"] = content_security_policy(self.script_hashes, self.settings.cookie_secure)
        h["X-Content-Type-Options"] = "nosniff"
        h["X-Frame-Options"] = "DENY"
        h["Referrer-Policy"] = "same-origin"
        h["Cross-Origin-Opener-Policy"] = "same-origin"
        h["Cross-Origin-Resource-Policy"] = "same-origin"
        h["Permissions-Policy"] = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"
        if self.settings.cookie_secure:
            h["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
        if request.path.startswith(PUBLIC_PREFIXES) or request.path == "/_favicon.ico":
            if resp.status_code in (200, 304) and ("m" in request.args or "v" in request.args):
                # fingerprinted by Dash (file mtime, Dash version): a changed file gets a new URL
                h["Cache-Control"] = "public, max-age=31536000, immutable"
        else:
            h["Cache-Control"] = "no-store"
        h.pop("Server", None)
        took = time.perf_counter() - getattr(g, "tt_t0", time.perf_counter())
        if took > SLOW_REQUEST_S:
            log.info("dashboard_slow_request", path=request.path, ms=round(took * 1000, 1),
                     output=(request.get_json(silent=True) or {}).get("output", "")[:120] if request.is_json else "")
        return resp
