"""Outbound HTTP for webhooks: refuses non-public targets at connect time (so a DNS answer that
changes between check and connect - rebinding - cannot reach an internal address), ignores
proxy environment variables, and never follows redirects (the dispatcher follows 307/308 to
the same origin only)."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import httpcore
import httpx


class TargetRefused(httpcore.ConnectError):
    """The destination resolves to an address this destination may not reach."""


def address_allowed(ip: str, allow_private: bool) -> bool:
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.is_unspecified or addr.is_multicast:
        return False
    return allow_private or addr.is_global


def resolve(host: str, port: int) -> list[str]:
    try:
        ipaddress.ip_address(host)
        return [host]
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[str] = []
    for _, _, _, _, sa in infos:
        if sa[0] not in out:
            out.append(sa[0])
    return out


class GuardedBackend(httpcore.SyncBackend):
    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        try:
            addrs = resolve(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve host: {exc.strerror or exc}") from exc
        if not addrs:
            raise httpcore.ConnectError("host resolves to no address")
        bad = [a for a in addrs if not address_allowed(a, self.allow_private)]
        if bad:
            raise TargetRefused("target resolves to a private, loopback, link-local or reserved address "
                                "(set allow_private = true on this destination to permit it)")
        last: Exception | None = None
        for a in addrs:
            try:
                return super().connect_tcp(a, port, timeout=timeout, local_address=local_address,
                                           socket_options=socket_options)
            except httpcore.ConnectError as exc:
                last = exc
        raise last or httpcore.ConnectError("connect failed")


class GuardedTransport(httpx.HTTPTransport):
    def __init__(self, allow_private: bool) -> None:
        super().__init__(trust_env=False, retries=0)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False), max_connections=8, max_keepalive_connections=4,
            keepalive_expiry=30.0, retries=0, network_backend=GuardedBackend(allow_private))


def client(allow_private: bool) -> httpx.Client:
    return httpx.Client(transport=GuardedTransport(allow_private), follow_redirects=False, trust_env=False,
                        headers={"user-agent": "ToolTrail-Webhooks/1"})
