"""`tooltrail proxy`: an auditing MCP proxy in front of any MCP server.

Built on fastmcp's proxy (``FastMCPProxy`` + ``ProxyClient``, which forward tools, resources,
prompts, completions, sampling, elicitation, logging and progress) with `AuditMiddleware`
on top. Upstream: a stdio command or a Streamable HTTP URL. Front: stdio (desktop clients)
or Streamable HTTP (optionally with bearer tokens whose identity becomes the principal).

One upstream connection is shared by every front session (a stdio server is one process
anyway); it is re-established transparently when it dies.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.emitter import Emitter
from ingest.mcp.middleware import AuditMiddleware, AuditSettings, UpstreamInfo
from tooltrail.logs import get_logger

log = get_logger("tooltrail.proxy")

# Environment variables never passed to a wrapped stdio server: ToolTrail's own secrets.
_PRIVATE_ENV_PREFIXES = ("TOOLTRAIL_",)


@dataclass
class ProxyOptions:
    name: str
    command: list[str] | None = None  # stdio upstream: argv
    url: str | None = None  # Streamable HTTP upstream
    upstream_headers: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] | None = None  # stdio upstream environment (default: ours minus TOOLTRAIL_*)
    cwd: str | None = None
    upstream_mode: str = "legacy"  # "legacy" (initialize handshake), "auto" (discover, fall back), or a version
    audit: AuditSettings = field(default_factory=AuditSettings)

    def __post_init__(self) -> None:
        if bool(self.command) == bool(self.url):
            raise ValueError("give exactly one upstream: a stdio command or a Streamable HTTP url")


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The wrapped server's environment: ours (it was configured for the server, e.g. by a
    desktop client's ``env``) without ToolTrail's variables (collector token, ...)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_PRIVATE_ENV_PREFIXES)}
    if extra:
        env.update(extra)
    return env


# --------------------------------------------------------------------------------------
# upstream client
# --------------------------------------------------------------------------------------


def _tracking_client_class() -> type:
    from fastmcp.server.providers.proxy import ProxyClient

    class TrackingProxyClient(ProxyClient):  # type: ignore[misc, valid-type]
        """ProxyClient that records the upstream serverInfo (name, version) when it connects."""

        _tt_upstream: UpstreamInfo

        async def __aenter__(self) -> Any:
            r = await super().__aenter__()
            try:
                self._tt_upstream.update(self.server_info, self.protocol_version)
            except Exception as exc:
                log.debug("upstream_info_unreadable", error=str(exc)[:200])
            return r

    return TrackingProxyClient


class SharedUpstream:
    """One long-lived upstream client; reconnected on the next call after it died."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._held = False
        self._lock = asyncio.Lock()

    def _dead(self) -> bool:
        task = self.client._session_state.session_task
        return task is None or task.done()

    async def get(self) -> Any:
        if self._held and not self._dead():
            return self.client
        async with self._lock:
            if self._held and self._dead():
                log.warning("upstream_reconnect")
                self._held = False
                try:
                    await self.client._disconnect(force=True)
                except Exception as exc:
                    log.debug("upstream_disconnect_failed", error=str(exc)[:200])
            if not self._held:
                await self.client.__aenter__()
                self._held = True
        return self.client

    async def close(self) -> None:
        if self._held:
            self._held = False
            try:
                await self.client._disconnect(force=True)
            except Exception as exc:
                log.debug("upstream_disconnect_failed", error=str(exc)[:200])
        close = getattr(self.client.transport, "close", None)
        if close is not None:
            try:
                await close()
            except Exception as exc:
                log.debug("upstream_transport_close_failed", error=str(exc)[:200])


def make_upstream(opts: ProxyOptions, upstream: UpstreamInfo) -> SharedUpstream:
    from fastmcp.client.transports import StdioTransport, StreamableHttpTransport

    transport: Any
    if opts.command:
        transport = StdioTransport(command=opts.command[0], args=list(opts.command[1:]),
                                   env=opts.env if opts.env is not None else child_env(), cwd=opts.cwd,
                                   keep_alive=True, log_file=sys.stderr)
    else:
        transport = StreamableHttpTransport(str(opts.url), headers=dict(opts.upstream_headers))
    cls = _tracking_client_class()
    # Front headers (including Authorization) are not forwarded: the upstream has its own
    # credentials (--upstream-header), and a front token must not leak to the server.
    client = cls(transport, mode=opts.upstream_mode, forward_incoming_headers=False)
    client._tt_upstream = upstream
    return SharedUpstream(client)


# --------------------------------------------------------------------------------------
# front authentication (Streamable HTTP)
# --------------------------------------------------------------------------------------


def _verifier_base() -> type:
    from fastmcp.server.auth.auth import TokenVerifier

    return TokenVerifier


class HashedTokenVerifier(_verifier_base()):  # type: ignore[misc]
    """Bearer tokens for the proxy's HTTP front, stored as SHA-256 hashes.

    File (TOML)::

        [tokens.alice-laptop]                   # the token's name = token_id on events
        sha256 = "9f86d08..."                   # sha256 hex of the token (or token = "..." for tests)
        principal = "alice@example.com"
        scopes = ["notes:read", "notes:write"]
    """

    def __init__(self, entries: dict[str, dict[str, Any]]) -> None:
        super().__init__()
        self._by_hash: list[tuple[bytes, str, dict[str, Any]]] = []
        for name, e in entries.items():
            if "sha256" in e:
                digest = bytes.fromhex(str(e["sha256"]))
            elif "token" in e:
                digest = hashlib.sha256(str(e["token"]).encode()).digest()
            else:
                raise ValueError(f"token {name!r}: give sha256 (hex of the token's SHA-256) or token")
            if not e.get("principal"):
                raise ValueError(f"token {name!r}: principal is required")
            self._by_hash.append((digest, name, e))

    @classmethod
    def load(cls, path: str | Path) -> HashedTokenVerifier:
        try:
            data = tomllib.loads(Path(path).read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"auth tokens file {path}: {exc}") from exc
        tokens = data.get("tokens")
        if not isinstance(tokens, dict) or not tokens:
            raise ValueError(f"auth tokens file {path}: needs a [tokens.<name>] table")
        return cls(tokens)

    async def verify_token(self, token: str) -> Any:
        from fastmcp.server.auth.auth import AccessToken

        digest = hashlib.sha256(token.encode()).digest()
        match = None
        for h, name, e in self._by_hash:  # constant time per entry, no early exit
            if hmac.compare_digest(h, digest):
                match = (name, e)
        if match is None:
            return None
        name, e = match
        return AccessToken(token=token, client_id=name, scopes=list(e.get("scopes", [])),
                           subject=str(e["principal"]),
                           claims={"tooltrail_principal": str(e["principal"]), "tooltrail_token_id": name})


# --------------------------------------------------------------------------------------
# build & run
# --------------------------------------------------------------------------------------


@dataclass
class BuiltProxy:
    server: Any  # fastmcp.FastMCP
    upstream: SharedUpstream
    info: UpstreamInfo
    middleware: AuditMiddleware


def build_proxy(opts: ProxyOptions, emitter: Emitter, *, auth: Any = None) -> BuiltProxy:
    from fastmcp.server.providers.proxy import FastMCPProxy

    info = UpstreamInfo()
    shared = make_upstream(opts, info)
    audit = opts.audit
    if not audit.server:
        audit.server = opts.name
    audit.collector = "tooltrail-proxy"
    mw = AuditMiddleware(emitter, audit, upstream=info)
    server = FastMCPProxy(client_factory=shared.get, name=f"tooltrail-proxy:{opts.name}", identity="upstream",
                          auth=auth, middleware=[mw])
    return BuiltProxy(server, shared, info, mw)


async def serve(built: BuiltProxy, *, transport: str = "stdio", host: str = "127.0.0.1", port: int = 8765,
                path: str = "/mcp", uvicorn_config: dict[str, Any] | None = None) -> None:
    """Run the proxy until cancelled (stdio: until the client closes stdin)."""
    try:
        # Connect early: a broken upstream command fails loudly at start, and the
        # upstream's serverInfo is known before the first call.
        try:
            await built.upstream.get()
        except Exception as exc:
            log.error("upstream_connect_failed", error=str(exc)[:500], note="retrying on the first request")
        if transport == "stdio":
            await built.server.run_stdio_async(show_banner=False)
        else:
            await built.server.run_http_async(show_banner=False, transport="http", host=host, port=port,
                                              path=path, uvicorn_config=uvicorn_config or {"log_level": "warning"})
    finally:
        await built.upstream.close()
