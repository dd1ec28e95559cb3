"""API keys of the HTTP collector: ingest keys (one per source) and read keys.

`mint_key` creates a random token, returns it once and stores only its SHA-256 under
<data>/keys/api_keys.json (0600, written atomically). Tokens are 256-bit random values, so
a fast hash is enough (no dictionary to attack); argon2 would cost milliseconds per request.
Keys from the config file / TOOLTRAIL_API_KEYS / TOOLTRAIL_READ_KEYS are hashed on load and
never kept in plain text by the key ring. `KeyRing.authenticate` compares the presented
token's hash with every known hash in constant time (no early exit, `hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson

from ingest.fsio import write_atomic
from ingest.layout import Layout
from schemas.stored import format_ts

KEYS_FILE = "api_keys.json"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$")
MIN_TOKEN_LEN = 16
MAX_TOKEN_LEN = 512
PREFIX = {"ingest": "tti_", "read": "ttr_"}
Kind = Literal["ingest", "read"]


class ApiKeyError(ValueError):
    """A key cannot be created or loaded; the message never contains a token."""


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ApiKeyError(f"invalid key name {name!r}: use 1-64 of [A-Za-z0-9._:@-], starting with a letter or digit")
    return name


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", errors="surrogatepass")).digest()


@dataclass(frozen=True)
class ApiKey:
    name: str  # the source recorded on ingested events (ingest keys) or the reader's name
    kind: Kind
    digest: bytes = b""
    key_id: str = ""  # first 12 hex of the digest: safe to show and log
    created_at: str = ""
    origin: str = "file"  # file | config

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "key_id": self.key_id, "created_at": self.created_at,
                "origin": self.origin}


def keys_path(layout: Layout) -> Path:
    return layout.keys / KEYS_FILE


def _read_file(path: Path) -> list[dict[str, Any]]:
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return []
    except orjson.JSONDecodeError as exc:
        raise ApiKeyError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ApiKeyError(f"{path}: expected {{\"keys\": [...]}}")
    return data["keys"]


_file_lock = threading.Lock()


def _write_file(layout: Layout, entries: list[dict[str, Any]]) -> None:
    layout.keys.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(keys_path(layout), orjson.dumps({"version": 1, "keys": entries}, option=orjson.OPT_INDENT_2), mode=0o600)
    os.chmod(keys_path(layout), 0o600)


def mint_key(layout: Layout, name: str, kind: Kind = "ingest") -> tuple[str, ApiKey]:
    """Create a key; returns (token, key). The token is shown once and never stored."""
    check_name(name)
    if kind not in PREFIX:
        raise ApiKeyError(f"unknown key kind {kind!r}")
    token = PREFIX[kind] + secrets.token_urlsafe(32)
    digest = token_digest(token)
    key = ApiKey(name=name, kind=kind, digest=digest, key_id=digest.hex()[:12], created_at=format_ts(datetime.now(UTC)))
    with _file_lock:
        entries = _read_file(keys_path(layout))
        entries.append({"name": name, "kind": kind, "sha256": digest.hex(), "key_id": key.key_id,
                        "created_at": key.created_at})
        _write_file(layout, entries)
    return token, key


def list_keys(layout: Layout) -> list[ApiKey]:
    out = []
    for e in _read_file(keys_path(layout)):
        try:
            out.append(ApiKey(name=check_name(str(e["name"])), kind=e["kind"], digest=bytes.fromhex(e["sha256"]),
                              key_id=str(e.get("key_id") or e["sha256"][:12]), created_at=str(e.get("created_at", ""))))
        except (KeyError, ValueError, TypeError) as exc:
            raise ApiKeyError(f"{keys_path(layout)}: malformed entry ({type(exc).__name__})") from exc
    return out


def revoke_key(layout: Layout, name_or_id: str) -> int:
    """Remove every stored key whose name or key id equals `name_or_id`; returns how many."""
    with _file_lock:
        entries = _read_file(keys_path(layout))
        keep = [e for e in entries if name_or_id not in (e.get("name"), e.get("key_id"))]
        if len(keep) != len(entries):
            _write_file(layout, keep)
        return len(entries) - len(keep)


def _config_keys(pairs: dict[str, str], kind: Kind) -> list[ApiKey]:
    out = []
    for name, token in pairs.items():
        check_name(name)
        if not MIN_TOKEN_LEN <= len(token) <= MAX_TOKEN_LEN:
            raise ApiKeyError(f"configured {kind} key for {name!r} must be {MIN_TOKEN_LEN}-{MAX_TOKEN_LEN} characters")
        d = token_digest(token)
        out.append(ApiKey(name=name, kind=kind, digest=d, key_id=d.hex()[:12], origin="config"))
    return out


class KeyRing:
    """Every accepted key: configured ones plus the key file, re-read when it changes."""

    def __init__(self, layout: Layout, api_keys: dict[str, str] | None = None, read_keys: dict[str, str] | None = None,
                 *, reload_every_s: float = 1.0) -> None:
        self.layout = layout
        self._static = _config_keys(api_keys or {}, "ingest") + _config_keys(read_keys or {}, "read")
        self._reload_every = reload_every_s
        self._file_sig: tuple[int, int] | None = None
        self._checked = 0.0
        self._keys: tuple[ApiKey, ...] = tuple(self._static)
        self._lock = threading.Lock()
        self._reload(force=True)

    @classmethod
    def from_config(cls, config: Any) -> KeyRing:
        return cls(config.layout, config.http.api_keys, config.http.read_keys)

    def _reload(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < self._reload_every:
            return
        with self._lock:
            self._checked = now
            try:
                st = keys_path(self.layout).stat()
                sig: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                sig = None
            if sig == self._file_sig and not force:
                return
            try:
                stored = list_keys(self.layout) if sig else []
            except ApiKeyError:
                if force:
                    raise
                return  # keep the last good set; a half-edited file must not lock everyone out
            self._file_sig = sig
            self._keys = tuple(self._static + stored)

    @property
    def keys(self) -> tuple[ApiKey, ...]:
        self._reload()
        return self._keys

    def authenticate(self, token: str) -> ApiKey | None:
        """The key this token belongs to, or None. Time does not depend on which key matched
        or how much of a hash matched."""
        if not token or len(token) > MAX_TOKEN_LEN:
            return None
        digest = token_digest(token)
        found: ApiKey | None = None
        for key in self.keys:
            if hmac.compare_digest(key.digest, digest):
                found = key
        return found

    def sources(self) -> list[str]:
        return sorted({k.name for k in self.keys if k.kind == "ingest"})
