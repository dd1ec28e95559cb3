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
import fcntl
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
        self._broken = False
        self._lock = asyncio.Lock()

    def _dead(self) -> bool:
        if self._broken:
            return True
        state = self.client._session_state
        task = state.session_task
        if task is None or task.done():
            return True
        dispatcher = getattr(state.session, "_dispatcher", None)  # closed when the stream ended
        return bool(getattr(dispatcher, "_closed", False))

    def note_error(self, exc: BaseException) -> None:
        """Called for every failed call: a lost connection (upstream process exited, HTTP
        session terminated by a restarted server) makes the next call reconnect."""
        seen = 0
        e: BaseException | None = exc
        while e is not None and seen < 8:
            if _is_connection_loss(e):
                self._broken = True
                return
            e = e.__cause__ or e.__context__
            seen += 1

    async def get(self) -> Any:
        if self._held and not self._dead():
            return self.client
        async with self._lock:
            if self._held and self._dead():
                log.warning("upstream_reconnect")
                self._held = False
                self._broken = False
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


def _is_connection_loss(e: BaseException) -> bool:
    import anyio

    if isinstance(e, anyio.ClosedResourceError | anyio.BrokenResourceError | anyio.EndOfStream | ConnectionError):
        return True
    if type(e).__module__.startswith(("httpx", "httpcore")) and type(e).__name__.endswith(("Error", "Exception")):
        return True
    error = getattr(e, "error", None)
    code = getattr(error, "code", None)
    message = str(getattr(error, "message", "") or "")
    # CONNECTION_CLOSED, or an HTTP 404 on our session id (the upstream restarted / expired it)
    return code == -32000 or "Session terminated" in message or "Session not found" in message


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
    mw = AuditMiddleware(emitter, audit, upstream=info, on_error=shared.note_error)
    server = FastMCPProxy(client_factory=shared.get, name=f"tooltrail-proxy:{opts.name}", identity="upstream",
                          auth=auth, middleware=[mw])
    return BuiltProxy(server, shared, info, mw)


class _LineReader:
    """``async for line in stdin`` over an asyncio pipe (what `stdio_server` iterates)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader

    def __aiter__(self) -> _LineReader:
        return self

    async def __anext__(self) -> str:
        line = await self.reader.readline()
        if not line:
            raise StopAsyncIteration
        return line.decode("utf-8", "replace")


class _PipeWriter:
    """``await stdout.write(s)`` / ``await stdout.flush()`` over an asyncio pipe."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    async def write(self, data: str) -> None:
        self.writer.write(data.encode("utf-8"))

    async def flush(self) -> None:
        await self.writer.drain()


async def _run_stdio_pipes(server: Any) -> bool:
    """Serve MCP on stdin/stdout through asyncio pipes instead of the SDK's default
    (``anyio.wrap_file``, one worker-thread hop per line read, write and flush: three per
    call, ~0.3 ms of the proxy's overhead). Like the SDK, fd 0 is pointed at /dev/null and
    fd 1 at stderr while serving, so nothing else can write into the protocol stream.
    Returns False (nothing done) when stdin/stdout are not pipes, sockets or terminals, or
    the fastmcp internals it relies on are missing; the caller then uses the SDK's default.
    """
    import stat

    if os.environ.get("TOOLTRAIL_PROXY_PIPES", "1") == "0":
        return False
    try:
        from fastmcp.server.context import reset_transport, set_transport
        from mcp.server.stdio import stdio_server

        low = server._mcp_server
        lifespan = server._lifespan_manager
    except (ImportError, AttributeError):
        return False
    try:
        if not all(stat.S_ISFIFO(m) or stat.S_ISSOCK(m) or stat.S_ISCHR(m)
                   for m in (os.fstat(0).st_mode, os.fstat(1).st_mode)):
            return False
        in_fd = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
        out_fd = fcntl.fcntl(1, fcntl.F_DUPFD_CLOEXEC, 3)
    except OSError:
        return False
    loop = asyncio.get_running_loop()
    saved_in, saved_out = os.dup(0), os.dup(1)
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.dup2(2, 1)  # stray prints go to stderr, never into the protocol
        reader = asyncio.StreamReader(limit=64 << 20)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                     os.fdopen(in_fd, "rb", buffering=0))
        w_transport, w_protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin,
                                                                os.fdopen(out_fd, "wb", buffering=0))
        writer = asyncio.StreamWriter(w_transport, w_protocol, None, loop)
        token = set_transport("stdio")
        try:
            async with lifespan(), stdio_server(stdin=_LineReader(reader), stdout=_PipeWriter(writer)) as (r, w):
                await low.run(r, w, low.create_initialization_options())
        finally:
            reset_transport(token)
            w_transport.close()
        return True
    finally:
        os.dup2(saved_in, 0)
        os.dup2(saved_out, 1)
        os.close(saved_in)
        os.close(saved_out)


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
            if not await _run_stdio_pipes(built.server):
                await built.server.run_stdio_async(show_banner=False)
        else:
            await built.server.run_http_async(show_banner=False, transport="http", host=host, port=port,
                                              path=path, uvicorn_config=uvicorn_config or {"log_level": "warning"})
    finally:
        await built.upstream.close()
