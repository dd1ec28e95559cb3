"""Request bodies: bounded reading, gzip decoding with a decompressed-size limit, and
splitting into items (one JSON object, a JSON array, or NDJSON lines).

`read_body` runs on the event loop (it only moves bytes); `decode_items` runs on a worker
thread together with the write path, so a large body never stalls other requests."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request

from ingest.http.errors import ApiError

JSON_TYPES = {"application/json", "text/json"}
NDJSON_TYPES = {"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines",
                "application/jsonlines", "application/json-seq"}
ENCODINGS = {"identity", "gzip", "x-gzip"}
_WS = b" \t\r"


@dataclass
class Batch:
    items: list[Any]
    lines: list[int] | None  # NDJSON: physical line of each item
    single: bool  # the body was one JSON object, not a batch


def media_kind(content_type: str | None) -> str:
    """'json' or 'ndjson'; 415 for anything else. A missing type is read as JSON."""
    if not content_type:
        return "json"
    mt = content_type.split(";", 1)[0].strip().lower()
    if mt in JSON_TYPES or (mt.startswith("application/") and mt.endswith("+json")):
        return "json"
    if mt in NDJSON_TYPES:
        return "ndjson"
    raise ApiError(415, "unsupported_media_type",
                   "send application/json (one event or an array) or application/x-ndjson (one event per line)")


def content_encoding(value: str | None) -> str:
    enc = (value or "identity").strip().lower()
    if enc not in ENCODINGS:
        raise ApiError(415, "unsupported_encoding", "Content-Encoding must be gzip or identity")
    return "gzip" if enc.endswith("gzip") else "identity"


def too_large(limit: int, what: str = "request body") -> ApiError:
    return ApiError(413, "body_too_large", f"{what} larger than {limit} bytes", limit=limit)


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The raw body, refusing (413) before reading when Content-Length says it is too large
    and while reading when a chunked body grows past the limit."""
    cl = request.headers.get("content-length")
    if cl is not None:
        try:
            n = int(cl)
        except ValueError:
            raise ApiError(400, "bad_request", "invalid Content-Length") from None
        if n > max_bytes:
            raise too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise too_large(max_bytes)
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(400, "client_disconnected", "the client went away before the body was complete") from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def gunzip(data: bytes, limit: int) -> bytes:
    """Decode gzip (one or more members) producing at most `limit` bytes: a gzip bomb stops
    at the limit instead of exhausting memory."""
    out = bytearray()
    rest = data
    while rest:
        d = zlib.decompressobj(wbits=31)
        buf = rest
        while buf:
            try:
                chunk = d.decompress(buf, limit - len(out) + 1)
            except zlib.error:
                raise ApiError(400, "bad_encoding", "the body is not valid gzip") from None
            out += chunk
            if len(out) > limit:
                raise too_large(limit, "decompressed body")
            buf = d.unconsumed_tail
        if not d.eof:
            raise ApiError(400, "bad_encoding", "the gzip body is truncated")
        rest = d.unused_data
        if rest and not rest.lstrip(b"\x00"):
            break  # trailing zero padding
    return bytes(out)


def _malformed(exc: orjson.JSONDecodeError, body: bytes) -> ApiError:
    pos = int(getattr(exc, "pos", 0) or 0)
    line = body.count(b"\n", 0, pos) + 1
    column = pos - (body.rfind(b"\n", 0, pos) + 1) + 1
    msg = str(getattr(exc, "msg", "") or "invalid JSON").split(":")[0]
    return ApiError(400, "malformed_json", f"malformed JSON at line {line}, column {column} (byte {pos}): {msg}",
                    position=pos, line=line, column=column)


def split_items(body: bytes, kind: str, max_items: int) -> Batch:
    if kind == "ndjson":
        items: list[Any] = []
        lines: list[int] = []
        for no, line in enumerate(body.split(b"\n"), 1):
            line = line.strip(_WS)
            if not line:
                continue
            if len(items) >= max_items:
                raise ApiError(413, "too_many_items", f"more than {max_items} events in one request", limit=max_items)
            items.append(line)
            lines.append(no)
        if not items:
            raise ApiError(400, "empty_body", "the body holds no events")
        return Batch(items, lines, False)
    if not body.strip():
        raise ApiError(400, "empty_body", "the body holds no events")
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _malformed(exc, body) from None
    if isinstance(obj, dict):
        return Batch([obj], None, True)
    if isinstance(obj, list):
        if len(obj) > max_items:
            raise ApiError(413, "too_many_items", f"more than {max_items} events in one request", limit=max_items)
        # Items that are not objects go to the write path as their JSON text, so they are
        # rejected there ("an event must be a JSON object") and quarantined like any bad item.
        return Batch([it if type(it) is dict else orjson.dumps(it) for it in obj], None, False)
    raise ApiError(400, "bad_body", "the body must be a JSON object (one event) or an array of events")


def decode_items(raw: bytes, encoding: str, kind: str, max_decompressed: int, max_items: int) -> Batch:
    body = gunzip(raw, max_decompressed) if encoding == "gzip" else raw
    if len(body) > max_decompressed:
        raise too_large(max_decompressed, "decoded body")
    return split_items(body, kind, max_items)
