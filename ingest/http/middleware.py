"""Outermost ASGI layer: security headers on every response, a JSON 500 for anything
unexpected (type logged, no traceback or data in the response), request metrics, and an
optional access log (method, route, status, time - never bodies, tokens or query values)."""

from __future__ import annotations

import time
from typing import Any

from tooltrail.logs import get_logger

log = get_logger("tooltrail.http")

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
_INTERNAL = b'{"error":"internal","detail":"internal error; nothing was acknowledged"}'


class GuardMiddleware:
    def __init__(self, app: Any, metrics: Any = None, access_log: bool = False) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        state = {"started": False, "status": 500}

        async def _send(message: dict) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
                state["status"] = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), *SECURITY_HEADERS]}
            await send(message)

        try:
            await self.app(scope, receive, _send)
        except Exception as exc:
            route = getattr(scope.get("route"), "path", "unmatched")
            log.error("unhandled_error", route=route, method=scope.get("method"), error_type=type(exc).__name__)
            if not state["started"]:
                await _send({"type": "http.response.start", "status": 500,
                             "headers": [(b"content-type", b"application/json"),
                                         (b"content-length", str(len(_INTERNAL)).encode())]})
                await _send({"type": "http.response.body", "body": _INTERNAL})
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            if self.metrics is not None:
                self.metrics.requests.labels(route, str(state["status"])).inc()
            if self.access_log:
                log.info("request", method=scope.get("method"), route=route, status=state["status"],
                         ms=round((time.perf_counter() - t0) * 1000, 2))
