"""JSON error bodies. Every error the API sends has the shape
`{"error": <code>, "detail": <message>, ...}` - never a stack trace, never input data."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

JSON = "application/json"


class ApiError(Exception):
    """Raised anywhere in a request; turned into a JSON error response."""

    def __init__(self, status: int, code: str, detail: str, *, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type=JSON)


def error_response(status: int, code: str, detail: str, headers: dict[str, str] | None = None,
                   **extra: Any) -> Response:
    return json_response({"error": code, "detail": detail, **extra}, status, headers)


def api_error_response(exc: ApiError) -> Response:
    return error_response(exc.status, exc.code, exc.detail, exc.headers, **exc.extra)


UNAUTHORIZED = {"WWW-Authenticate": 'Bearer realm="tooltrail"'}


def unauthorized() -> ApiError:
    # One answer for a missing, malformed, unknown or revoked key: no hint which part was wrong.
    return ApiError(401, "unauthorized", "a valid API key is required (Authorization: Bearer <key>)",
                    headers=UNAUTHORIZED)
