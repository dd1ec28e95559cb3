"""Auditing middleware: one v1 event per ``tools/call``, tool-definition hashes at
``tools/list``, optional policy. Used by `tooltrail proxy` and by server authors.

fastmcp server, two lines::

    from ingest.mcp import audit
    mcp.add_middleware(audit())          # TOOLTRAIL_COLLECTOR_URL / _TOKEN, or TOOLTRAIL_KAFKA_BOOTSTRAP

official SDK (``mcp.server.mcpserver.MCPServer`` or the low-level ``Server``), two lines::

    from ingest.mcp import sdk_audit
    server = MCPServer("notes", middleware=[sdk_audit()])   # or server.middleware.append(sdk_audit())

Both emit through an `ingest.emitter.Emitter` (batched, bounded, never blocking the call).
"""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ingest.emitter import Emitter, emitter_from_env
from ingest.mcp.events import build_event, content_bytes, content_text, ident, sanitize_text
from ingest.mcp.policy import POLICY_DENIED_CODE, Decision, Policy
from ingest.mcp.toolhash import hash_fastmcp_tool, hash_wire_tool
from tooltrail.logs import get_logger

log = get_logger("tooltrail.mcp")

CLIENT_INFO_META_KEY = "io.modelcontextprotocol/clientInfo"
SESSION_META_KEY = "io.tooltrail/session"
SESSION_HEADER = "x-tooltrail-session"
PROCESS_SESSION = f"proc-{uuid.uuid4().hex}"
"""Session id of this process: a stdio server or proxy serves exactly one client connection,
and protocol 2026-07-28 has no session of its own, so the process is the session."""


@dataclass
class AuditSettings:
    """What the auditor stamps on events besides what it observes."""

    server: str | None = None  # server name on events (default: upstream/own serverInfo.name)
    server_version: str | None = None  # default: from initialize / discover
    principal: str | None = None  # for callers without a token; default $TOOLTRAIL_PRINCIPAL or the OS user
    scopes: list[str] | None = None  # scopes of that principal (default: policy.default_scopes)
    agent: str | None = None  # default: clientInfo "name/version" from the MCP client
    session: str | None = None  # fixed session (default: MCP session id, else per process / principal)
    labels: dict[str, str] = field(default_factory=dict)
    policy: Policy | None = None
    collector: str = "tooltrail-middleware"  # labels["collector"]

    def default_principal(self) -> tuple[str, str]:
        if self.principal:
            return self.principal, "config"
        env = os.environ.get("TOOLTRAIL_PRINCIPAL")
        if env:
            return env, "env"
        try:
            return f"os:{getpass.getuser()}", "os-user"
        except Exception:  # no passwd entry (containers)
            return f"os:uid-{os.getuid()}", "os-user"


@dataclass
class UpstreamInfo:
    """Server identity learnt from initialize / server/discover (the proxy updates it)."""

    name: str | None = None
    version: str | None = None
    protocol_version: str | None = None

    def update(self, server_info: Any, protocol_version: str | None) -> None:
        if server_info is not None:
            self.name = getattr(server_info, "name", None) or self.name
            self.version = getattr(server_info, "version", None) or self.version
        if protocol_version:
            self.protocol_version = protocol_version


@dataclass(slots=True)
class Caller:
    principal: str
    principal_source: str
    token_id: str | None
    scopes: list[str] | None
    agent: str | None
    session: str
    correlation_id: str | None
    request_id: str | None
    transport: str | None
    protocol_version: str | None


def _token_identity(token: Any) -> tuple[str, str | None, list[str]] | None:
    """(principal, token_id, scopes) of an authenticated access token, if any."""
    if token is None:
        return None
    claims: Mapping[str, Any] = getattr(token, "claims", None) or {}
    principal = (claims.get("tooltrail_principal") or getattr(token, "subject", None) or claims.get("sub")
                 or getattr(token, "client_id", None))
    if not principal:
        return None
    token_id = claims.get("tooltrail_token_id") or claims.get("jti")
    if not token_id:
        raw = getattr(token, "token", None)
        token_id = "sha256:" + hashlib.sha256(raw.encode()).hexdigest()[:16] if isinstance(raw, str) else None
    return str(principal), (str(token_id) if token_id else None), list(getattr(token, "scopes", None) or [])


def _agent_of(client_params: Any, meta: Mapping[str, Any] | None) -> str | None:
    info: Any = None
    if client_params is not None:
        info = getattr(client_params, "client_info", None)
    if info is None and meta:
        info = meta.get(CLIENT_INFO_META_KEY)
    if info is None:
        return None
    name = info.get("name") if isinstance(info, Mapping) else getattr(info, "name", None)
    version = info.get("version") if isinstance(info, Mapping) else getattr(info, "version", None)
    if not name:
        return None
    return f"{name}/{version}" if version else str(name)


def _trace_id(meta: Mapping[str, Any] | None) -> str | None:
    tp = meta.get("traceparent") if meta else None
    if isinstance(tp, str) and len(tp) >= 55:
        return tp.split("-")[1]
    return None


class Auditor:
    """Transport- and framework-independent core shared by the fastmcp and SDK middlewares."""

    def __init__(self, emitter: Emitter, settings: AuditSettings | None = None,
                 upstream: UpstreamInfo | None = None) -> None:
        self.emitter = emitter
        self.settings = settings or AuditSettings()
        self.upstream = upstream
        self.policy = self.settings.policy
        self.hashes: dict[str, str] = {}
        self.previous: dict[str, str] = {}
        self._principal, self._principal_source = self.settings.default_principal()
        self._default_scopes = (self.settings.scopes if self.settings.scopes is not None
                                else (list(self.policy.default_scopes) if self.policy else None))
        self._labels = {"collector": self.settings.collector, **self.settings.labels}

    # ---- tools/list -------------------------------------------------------------------

    def remember(self, pairs: Iterable[tuple[str, str]]) -> None:
        for name, h in pairs:
            old = self.hashes.get(name)
            if old is not None and old != h:
                self.previous[name] = old
                log.warning("tool_definition_changed", server=self.server_name(), tool=name, old_hash=old, new_hash=h)
            self.hashes[name] = h

    def visible(self, name: str) -> bool:
        return self.policy is None or not self.policy.hide_denied or self.policy.listed(name).allowed

    # ---- identity ---------------------------------------------------------------------

    def caller(self, *, token: Any, session_id: str | None, headers: Mapping[str, str] | None,
               meta: Mapping[str, Any] | None, client_params: Any, request_id: Any, transport: str | None,
               protocol_version: str | None) -> Caller:
        ti = _token_identity(token)
        if ti is not None:
            principal, token_id, scopes = ti
            source = "token"
        else:
            principal, token_id, scopes, source = self._principal, None, self._default_scopes, self._principal_source
        session = self.settings.session or session_id
        if not session and headers is not None:
            session = headers.get("mcp-session-id") or headers.get(SESSION_HEADER)
        if not session and meta:
            s = meta.get(SESSION_META_KEY)
            session = s if isinstance(s, str) else None
        if not session:
            # stdio (one client per process) or stateless HTTP (per principal).
            session = PROCESS_SESSION if headers is None else f"stateless:{principal}"
        return Caller(principal=principal, principal_source=source, token_id=token_id, scopes=scopes,
                      agent=self.settings.agent or _agent_of(client_params, meta), session=session,
                      correlation_id=_trace_id(meta), request_id=None if request_id is None else str(request_id),
                      transport=transport, protocol_version=protocol_version)

    def decide(self, tool: str, caller: Caller) -> Decision | None:
        if self.policy is None:
            return None
        return self.policy.decide(tool, caller.scopes)

    # ---- events -----------------------------------------------------------------------

    def server_name(self) -> str | None:
        return self.settings.server or (self.upstream.name if self.upstream else None)

    def record(self, *, caller: Caller, tool: str, args: Any, started: float, latency_ms: float | None,
               decision: Decision | None, result: str, error: str | None = None,
               result_bytes: int | None = None, server: str | None = None, server_version: str | None = None) -> None:
        """Build and emit one event. Never raises."""
        try:
            labels = dict(self._labels)
            labels["principal_source"] = caller.principal_source
            if caller.transport:
                labels["transport"] = caller.transport
            if caller.protocol_version:
                labels["mcp.protocol_version"] = caller.protocol_version
            if caller.request_id is not None:
                labels["jsonrpc.request_id"] = caller.request_id
            up = self.upstream
            if up is not None and up.name and up.name != (server or self.server_name()):
                labels["mcp.server_info.name"] = up.name
            prev = self.previous.get(tool)
            if prev:
                labels["tool_description_hash_previous"] = prev
            allowed = decision is None or decision.allowed
            ev = build_event(
                ts=started, principal=caller.principal, session=caller.session, tool=tool, args=args,
                decision="allow" if allowed else "deny", agent=caller.agent, token_id=caller.token_id,
                correlation_id=caller.correlation_id, server=server or self.server_name(),
                server_version=server_version or self.settings.server_version or (up.version if up else None),
                tool_description_hash=self.hashes.get(tool),
                reason=None if decision is None else decision.reason,
                scope_checked=None if decision is None else decision.scope_checked,
                scopes_granted=caller.scopes, result=result, error=error, latency_ms=latency_ms,
                result_bytes=result_bytes, labels=labels,
            )
            self.emitter.emit(ev)
        except Exception as exc:  # auditing must never break the call
            log.error("audit_event_failed", error_type=type(exc).__name__, error=str(exc)[:300])


def _denied_error(tool: str, decision: Decision) -> Exception:
    from mcp.shared.exceptions import MCPError

    return MCPError(code=POLICY_DENIED_CODE, message=f"Denied by ToolTrail policy: {decision.reason}",
                    data={"tool": tool, "reason": decision.reason, "scope_required": decision.scope_checked})


def _outcome_of_exception(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, asyncio.CancelledError):
        return "error", "cancelled by the client"
    if isinstance(exc, TimeoutError):
        return "timeout", str(exc) or "timed out"
    code = getattr(getattr(exc, "error", None), "code", None)
    message = getattr(getattr(exc, "error", None), "message", None)
    if code is not None:
        if code == -32001:
            return "timeout", f"MCP error {code}: {message}"
        return "error", f"MCP error {code}: {message}"
    return "error", f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------------------
# fastmcp
# --------------------------------------------------------------------------------------


def _fastmcp_middleware_base() -> type:
    from fastmcp.server.middleware import Middleware

    return Middleware


class AuditMiddleware(_fastmcp_middleware_base()):  # type: ignore[misc]
    """fastmcp middleware: audit every tools/call, hash tools at tools/list, enforce policy."""

    def __init__(self, emitter: Emitter, settings: AuditSettings | None = None, *,
                 upstream: UpstreamInfo | None = None, on_error: Any = None) -> None:
        self.auditor = Auditor(emitter, settings, upstream)
        self.on_error = on_error  # the proxy's hook: reconnect after a lost upstream connection

    async def on_list_tools(self, context: Any, call_next: Any) -> Any:
        tools = await call_next(context)
        a = self.auditor
        try:
            a.remember((t.name, hash_fastmcp_tool(t)) for t in tools)
        except Exception as exc:
            log.error("tool_hash_failed", error_type=type(exc).__name__, error=str(exc)[:300])
        if a.policy is not None and a.policy.hide_denied:
            tools = [t for t in tools if a.visible(t.name)]
        return tools

    def _caller(self, ctx: Any) -> Caller:
        from fastmcp.server.dependencies import get_access_token

        rc = ctx.request_context if ctx is not None else None
        session = getattr(rc, "session", None)
        conn = getattr(session, "_connection", None)
        request = getattr(rc, "request", None)
        headers = getattr(request, "headers", None)
        try:
            token = get_access_token()
        except Exception:
            token = None
        return self.auditor.caller(
            token=token, session_id=getattr(conn, "session_id", None), headers=headers,
            meta=getattr(rc, "meta", None), client_params=getattr(conn, "client_params", None),
            request_id=getattr(rc, "request_id", None), transport=ctx.transport if ctx is not None else None,
            protocol_version=getattr(rc, "protocol_version", None))

    async def on_call_tool(self, context: Any, call_next: Any) -> Any:
        started = time.time()
        t0 = time.perf_counter()
        a = self.auditor
        params = context.message
        tool = params.name
        args = params.arguments
        ctx = context.fastmcp_context
        try:
            caller = self._caller(ctx)
        except Exception as exc:  # never break the call over identity plumbing
            log.error("audit_identity_failed", error_type=type(exc).__name__, error=str(exc)[:300])
            caller = a.caller(token=None, session_id=None, headers=None, meta=None, client_params=None,
                              request_id=None, transport=None, protocol_version=None)
        decision = a.decide(tool, caller)
        if decision is not None and not decision.allowed:
            a.record(caller=caller, tool=tool, args=args, started=started, latency_ms=None, decision=decision,
                     result="denied", server=self._own_server(ctx), server_version=self._own_version(ctx))
            raise _denied_error(tool, decision)
        try:
            result = await call_next(context)
        except BaseException as exc:
            outcome, text = _outcome_of_exception(exc)
            a.record(caller=caller, tool=tool, args=args, started=started,
                     latency_ms=(time.perf_counter() - t0) * 1000, decision=decision, result=outcome,
                     error=text, server=self._own_server(ctx), server_version=self._own_version(ctx))
            if self.on_error is not None:
                try:
                    self.on_error(exc)
                except Exception as hook_exc:
                    log.debug("on_error_hook_failed", error=str(hook_exc)[:200])
            raise
        latency = (time.perf_counter() - t0) * 1000
        content = getattr(result, "content", None)
        is_error = bool(getattr(result, "is_error", False))
        try:
            size = content_bytes(content, getattr(result, "structured_content", None))
        except Exception:
            size = None
        if tool not in a.hashes:
            await self._hash_one(ctx, tool)
        a.record(caller=caller, tool=tool, args=args, started=started, latency_ms=latency, decision=decision,
                 result="error" if is_error else "ok", error=content_text(content) if is_error else None,
                 result_bytes=size, server=self._own_server(ctx), server_version=self._own_version(ctx))
        return result

    async def _hash_one(self, ctx: Any, tool: str) -> None:
        """A call without a prior tools/list in this process: hash the definition now."""
        try:
            t = await ctx.fastmcp.get_tool(tool)
            if t is not None:
                self.auditor.remember([(t.name, hash_fastmcp_tool(t))])
        except Exception as exc:
            log.debug("tool_hash_lookup_failed", tool=tool, error=str(exc)[:200])

    def _own_server(self, ctx: Any) -> str | None:
        a = self.auditor
        if a.settings.server or a.upstream is not None:
            return None  # Auditor.server_name() decides
        srv = getattr(ctx, "fastmcp", None) if ctx is not None else None
        return getattr(srv, "name", None)

    def _own_version(self, ctx: Any) -> str | None:
        a = self.auditor
        if a.settings.server_version or a.upstream is not None:
            return None
        srv = getattr(ctx, "fastmcp", None) if ctx is not None else None
        v = getattr(srv, "version", None)
        return None if v is None else str(v)


def audit(emitter: Emitter | None = None, **settings: Any) -> AuditMiddleware:
    """fastmcp middleware for a server: ``mcp.add_middleware(audit())``.

    Without `emitter`, events go where the environment says (`emitter_from_env`).
    Keyword arguments are `AuditSettings` fields (server, principal, policy, labels, ...)."""
    settings.setdefault("collector", "tooltrail-fastmcp-middleware")
    s = AuditSettings(**settings)
    return AuditMiddleware(emitter or emitter_from_env(name=s.server or "fastmcp-server"), s)


# --------------------------------------------------------------------------------------
# official SDK (context-tier ServerMiddleware)
# --------------------------------------------------------------------------------------


class SdkAuditMiddleware:
    """``mcp.server`` ServerMiddleware (MCPServer(middleware=[...]) / Server.middleware)."""

    def __init__(self, emitter: Emitter, settings: AuditSettings | None = None) -> None:
        self.auditor = Auditor(emitter, settings)
        self._seen_name: str | None = None
        self._seen_version: str | None = None

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        method = ctx.method
        if method == "tools/call" and ctx.request_id is not None:
            return await self._call(ctx, call_next)
        if method == "tools/list" and ctx.request_id is not None:
            result = await call_next(ctx)
            self._remember(result)
            return result
        if method in ("initialize", "server/discover"):
            result = await call_next(ctx)
            try:
                self._learn(result)
            except Exception as exc:
                log.debug("server_info_unreadable", error=str(exc)[:200])
            return result
        return await call_next(ctx)

    def _remember(self, result: Any) -> None:
        tools = result.get("tools") if isinstance(result, Mapping) else getattr(result, "tools", None)
        try:
            self.auditor.remember((t["name"] if isinstance(t, Mapping) else t.name, hash_wire_tool(t))
                                  for t in tools or ())
        except Exception as exc:
            log.error("tool_hash_failed", error_type=type(exc).__name__, error=str(exc)[:300])

    def _caller(self, ctx: Any) -> Caller:
        from mcp.server.auth.middleware.auth_context import get_access_token

        session = ctx.session
        conn = getattr(session, "_connection", None)
        request = getattr(ctx, "request", None)
        return self.auditor.caller(
            token=get_access_token(), session_id=getattr(conn, "session_id", None),
            headers=getattr(request, "headers", None), meta=ctx.meta,
            client_params=getattr(conn, "client_params", None), request_id=ctx.request_id,
            transport="streamable-http" if request is not None else "stdio", protocol_version=ctx.protocol_version)

    async def _call(self, ctx: Any, call_next: Any) -> Any:
        started = time.time()
        t0 = time.perf_counter()
        a = self.auditor
        params = ctx.params or {}
        tool = ident(params.get("name")) or "unknown"
        args = params.get("arguments")
        try:
            caller = self._caller(ctx)
        except Exception as exc:
            log.error("audit_identity_failed", error_type=type(exc).__name__, error=str(exc)[:300])
            caller = a.caller(token=None, session_id=None, headers=None, meta=None, client_params=None,
                              request_id=None, transport=None, protocol_version=None)
        server, version = self._identity(ctx)
        decision = a.decide(tool, caller)
        if decision is not None and not decision.allowed:
            a.record(caller=caller, tool=tool, args=args, started=started, latency_ms=None, decision=decision,
                     result="denied", server=server, server_version=version)
            raise _denied_error(tool, decision)
        try:
            result = await call_next(ctx)
        except BaseException as exc:
            outcome, text = _outcome_of_exception(exc)
            a.record(caller=caller, tool=tool, args=args, started=started,
                     latency_ms=(time.perf_counter() - t0) * 1000, decision=decision, result=outcome,
                     error=text, server=server, server_version=version)
            raise
        latency = (time.perf_counter() - t0) * 1000
        if isinstance(result, Mapping):
            content, structured = result.get("content"), result.get("structuredContent")
            is_error = bool(result.get("isError"))
        else:
            content, structured = getattr(result, "content", None), getattr(result, "structured_content", None)
            is_error = bool(getattr(result, "is_error", False))
        try:
            size = content_bytes(content, structured)
        except Exception:
            size = None
        a.record(caller=caller, tool=tool, args=args, started=started, latency_ms=latency, decision=decision,
                 result="error" if is_error else "ok",
                 error=sanitize_text(content_text(content)) if is_error else None,
                 result_bytes=size, server=server, server_version=version)
        return result

    def _identity(self, ctx: Any) -> tuple[str | None, str | None]:
        s = self.auditor.settings
        return s.server or self._seen_name, s.server_version or self._seen_version

    def _learn(self, result: Any) -> None:
        """Server identity from an initialize / server/discover result passing through."""
        if isinstance(result, Mapping):
            info = result.get("serverInfo") or (result.get("_meta") or {}).get("io.modelcontextprotocol/serverInfo")
            name, version = (info.get("name"), info.get("version")) if isinstance(info, Mapping) else (None, None)
        else:
            info = getattr(result, "server_info", None)
            if info is None:
                meta = getattr(result, "meta", None) or {}
                info = meta.get("io.modelcontextprotocol/serverInfo") if isinstance(meta, Mapping) else None
            if isinstance(info, Mapping):
                name, version = info.get("name"), info.get("version")
            else:
                name, version = getattr(info, "name", None), getattr(info, "version", None)
        self._seen_name = name or self._seen_name
        self._seen_version = version or self._seen_version


def sdk_audit(emitter: Emitter | None = None, **settings: Any) -> SdkAuditMiddleware:
    """Official-SDK middleware: ``MCPServer("notes", middleware=[sdk_audit(server="notes")])``."""
    settings.setdefault("collector", "tooltrail-sdk-middleware")
    s = AuditSettings(**settings)
    return SdkAuditMiddleware(emitter or emitter_from_env(name=s.server or "mcp-server"), s)
