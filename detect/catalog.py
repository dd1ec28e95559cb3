"""Tool catalog: classifies tools (glob on server / tool name, optionally on argument values)
into capabilities, and classifies destinations (email domains, chat channels, repositories,
URL hosts) as internal or external.

Built-in defaults live in `detect/catalog.yaml`; a user file (DetectSettings.catalog_file) is
merged on top: its `tools` entries are evaluated before the built-in ones and its destination
lists extend the built-in lists.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

BUILTIN_CATALOG = Path(__file__).with_name("catalog.yaml")

CAPABILITIES: dict[str, str] = {
    "reads_private": "reads private data (files, mail, databases, private repositories, CRM)",
    "writes_external": "can send or write data to a destination that may be outside the organisation",
    "destructive": "deletes or irreversibly changes data or infrastructure",
    "executes_code": "runs code or shell commands",
    "network_egress": "makes outbound network requests to arbitrary URLs",
    "credential_access": "reads credentials, keys or secret material",
    "untrusted_input": "brings attacker-controllable content into the agent's context (web pages, inbound mail, public issues)",
    "approval": "a human approval / elicitation step",
}
DEST_TYPES = ("email", "channel", "repo", "url")


def _glob_list(v: Any) -> list[str]:
    if v is None:
        return ["*"]
    if isinstance(v, str):
        return [v]
    return [str(x) for x in v]


class ArgCap(BaseModel):
    model_config = ConfigDict(extra="forbid")
    arg: str | list[str] = Field("*", description="argument path(s) (dotted), or '*' for any string argument")
    regex: str
    caps: list[str]

    @field_validator("regex")
    @classmethod
    def _re_ok(cls, v: str) -> str:
        re.compile(v)
        return v


class DestSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str
    args: list[str] = Field(description="argument paths, or templates like '{owner}/{repo}'")

    @field_validator("type")
    @classmethod
    def _type_ok(cls, v: str) -> str:
        if v not in DEST_TYPES:
            raise ValueError(f"unknown destination type {v!r}; one of {', '.join(DEST_TYPES)}")
        return v


class ToolEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    server: str | list[str] | None = None
    tool: str | list[str] | None = None
    caps: list[str] = Field(default_factory=list)
    arg_caps: list[ArgCap] = Field(default_factory=list)
    dest: DestSpec | None = None


class DestLists(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email_domains: list[str] = Field(default_factory=list)
    channels: list[str] = Field(default_factory=list)
    repos: list[str] = Field(default_factory=list)
    url_hosts: list[str] = Field(default_factory=list, description="host globs or CIDRs")


class CatalogFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tools: list[ToolEntry] = Field(default_factory=list)
    internal: DestLists = Field(default_factory=DestLists)
    external: DestLists = Field(default_factory=DestLists)
    default_external: dict[str, bool] = Field(
        default_factory=dict, description="per destination type: unknown values count as external?")


_NO_CAPS: frozenset[str] = frozenset()
ARG_MEMO_MAX = 20_000
_IP_CACHE: dict[str, ipaddress.IPv4Address | ipaddress.IPv6Address | None] = {}
_HOST_CACHE: dict[str, str | None] = {}


def host_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP a host string denotes, including legacy forms (decimal, hex, octal IPv4)."""
    try:
        return _IP_CACHE[host]
    except KeyError:
        pass
    ip = _host_ip(host)
    if len(_IP_CACHE) > 50_000:
        _IP_CACHE.clear()
    _IP_CACHE[host] = ip
    return ip


def _host_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    h = host.strip("[]").lower()
    if not h or not (h[0].isdigit() or ":" in h):
        return None
    try:
        ip = ipaddress.ip_address(h)
    except ValueError:
        if not re.fullmatch(r"[0-9a-fx.]+", h):
            return None
        try:
            ip = ipaddress.IPv4Address(socket.inet_aton(h))
        except OSError:
            return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def url_host(u: str) -> str | None:
    try:
        return _HOST_CACHE[u]
    except KeyError:
        pass
    try:
        parts = urlsplit(u.strip())
        host = parts.hostname
    except ValueError:
        host = None
    out = host.lower().rstrip(".") if host else None
    if len(_HOST_CACHE) > 50_000:
        _HOST_CACHE.clear()
    _HOST_CACHE[u] = out
    return out


_URL_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]{1,15}://[^\s\"'<>]+")
_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+'-]+@([A-Za-z0-9.-]+\.[A-Za-z]{2,}|[A-Za-z0-9-]+)")


class _HostMatcher:
    def __init__(self, patterns: list[str]) -> None:
        self.globs: list[str] = []
        self.nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for p in patterns:
            try:
                self.nets.append(ipaddress.ip_network(p, strict=False))
            except ValueError:
                self.globs.append(p.lower())

    def __call__(self, host: str) -> bool:
        if self.nets:
            ip = host_ip(host)
            if ip is not None and any(ip.version == n.version and ip in n for n in self.nets):
                return True
        return any(fnmatch.fnmatchcase(host, g) for g in self.globs)


def _globs_match(value: str, globs: list[str]) -> bool:
    v = value.lower()
    return any(fnmatch.fnmatchcase(v, g.lower()) for g in globs)


@dataclass(frozen=True)
class DestInfo:
    """Memoised and shared between events: treat as read-only."""

    type: str
    values: list[str]
    external: list[str]
    internal: list[str]


@dataclass
class ToolInfo:
    """Classification of one (server, tool) pair. `caps` are the static capabilities."""

    server: str
    tool: str
    caps: frozenset[str]
    arg_caps: list[tuple[str, re.Pattern[str], frozenset[str]]] = field(default_factory=list)
    dest: DestSpec | None = None
    arg_simple: dict[str, list[tuple[re.Pattern[str], frozenset[str]]]] = field(default_factory=dict)
    arg_complex: list[tuple[str, re.Pattern[str], frozenset[str]]] = field(default_factory=list)
    # per simple argument name: string value -> capabilities its rules add (bounded memo: the
    # same paths, commands and queries recur, and their regex searches dominate caps_for)
    arg_memo: dict[str, dict[str, frozenset[str]]] = field(default_factory=dict)
    dest_memo: dict[tuple[str, ...], DestInfo] = field(default_factory=dict)  # raw destination values -> info

    def __post_init__(self) -> None:
        for path, rx, caps in self.arg_caps:
            if path != "*" and "." not in path and "[" not in path:
                self.arg_simple.setdefault(path, []).append((rx, caps))
            else:
                self.arg_complex.append((path, rx, caps))
        self.arg_memo = {k: {} for k in self.arg_simple}
        self.caps_of = self._caps_fn()
        # destination arguments: (0, plain name) | (1, template) | (2, path)
        self.dest_plan = [(1 if "{" in a else 2 if ("." in a or "[" in a or "*" in a) else 0, a)
                          for a in (self.dest.args if self.dest else [])]

    def _caps_fn(self) -> Any:
        """args -> capabilities (a closure over this tool's rules: called per event)."""
        caps, memo, simple, complex_ = self.caps, self.arg_memo, self.arg_simple, self.arg_complex
        if not self.arg_caps:
            return lambda args: caps

        def learn(k: str, x: str, m: dict[str, frozenset[str]]) -> frozenset[str]:
            got = _NO_CAPS
            for rx, cs in simple[k]:
                if rx.search(x):
                    got = got | cs
            if len(m) >= ARG_MEMO_MAX:
                m.clear()
            m[x] = got
            return got

        def caps_of(args: Any) -> frozenset[str]:
            if not isinstance(args, dict):
                return caps
            extra: frozenset[str] = _NO_CAPS
            for k, v in args.items():
                m = memo.get(k)
                if m is None:
                    continue
                if type(v) is str:  # the common case, without the loop below
                    got = m.get(v)
                    if got is None:
                        got = learn(k, v, m)
                    if got:
                        extra = extra | got
                    continue
                for x in v if isinstance(v, list) else ():
                    if type(x) is not str:
                        continue
                    got = m.get(x)
                    if got is None:
                        got = learn(k, x, m)
                    if got:
                        extra = extra | got
            if not complex_:
                return caps | extra if extra else caps
            texts: list[str] | None = None
            for path, rx, cs in complex_:
                if cs <= extra:
                    continue
                if path == "*":
                    if texts is None:
                        texts = string_leaves(args, [])
                    vals2: list[Any] = texts
                else:
                    vals2 = arg_values(args, path)
                if any(isinstance(v, str) and rx.search(v) for v in vals2):
                    extra |= cs
            return caps | extra if extra else caps

        return caps_of


def arg_values(args: Any, path: str) -> list[Any]:
    """Values at a dotted path in args; '[*]' / '*' expand lists / objects; ints index lists."""
    cur: list[Any] = [args]
    for part in path.replace("[", ".[").split("."):
        if not part:
            continue
        nxt: list[Any] = []
        for v in cur:
            if part in ("[*]", "*"):
                if isinstance(v, list):
                    nxt.extend(v)
                elif isinstance(v, dict):
                    nxt.extend(v.values())
            elif part.startswith("[") and part.endswith("]"):
                try:
                    i = int(part[1:-1])
                except ValueError:
                    continue
                if isinstance(v, list) and -len(v) <= i < len(v):
                    nxt.append(v[i])
            elif isinstance(v, dict) and part in v:
                nxt.append(v[part])
        cur = nxt
        if not cur:
            return []
    out: list[Any] = []
    for v in cur:
        if isinstance(v, list):
            out.extend(v)
        else:
            out.append(v)
    return out


def string_leaves(v: Any, out: list[str], limit: int = 2000) -> list[str]:
    if type(v) is dict and not out:
        vals = list(v.values())
        for x in vals:  # flat string arguments: the common case
            if type(x) is not str:
                break
        else:
            return vals
    if isinstance(v, str):
        out.append(v)
    elif isinstance(v, dict):
        for x in v.values():
            if len(out) >= limit:
                break
            string_leaves(x, out, limit)
    elif isinstance(v, list):
        for x in v:
            if len(out) >= limit:
                break
            string_leaves(x, out, limit)
    return out


class Catalog:
    def __init__(self, files: list[CatalogFile]) -> None:
        self.entries: list[ToolEntry] = []
        internal = DestLists()
        external = DestLists()
        self.default_external = {"email": True, "channel": False, "repo": True, "url": True}
        # later files have priority: their tool entries come first
        for f in reversed(files):
            self.entries.extend(f.tools)
        for f in files:
            for name in DestLists.model_fields:
                getattr(internal, name).extend(getattr(f.internal, name))
                getattr(external, name).extend(getattr(f.external, name))
            self.default_external.update(f.default_external)
        for e in self.entries:
            for c in list(e.caps) + [c for a in e.arg_caps for c in a.caps]:
                if c not in CAPABILITIES:
                    raise ValueError(f"catalog: unknown capability {c!r}; known: {', '.join(CAPABILITIES)}")
        self.internal = internal
        self.external = external
        self._int_hosts = _HostMatcher(internal.url_hosts)
        self._ext_hosts = _HostMatcher(external.url_hosts)
        self._cache: dict[tuple[str, str], ToolInfo] = {}
        self._ext_memo: dict[tuple[str, str], bool] = {}

    @classmethod
    def load(cls, extra: list[str | Path | dict[str, Any]] | None = None, builtin: bool = True) -> Catalog:
        files: list[CatalogFile] = []
        if builtin:
            files.append(CatalogFile.model_validate(yaml.safe_load(BUILTIN_CATALOG.read_text()) or {}))
        for x in extra or []:
            raw = x if isinstance(x, dict) else (yaml.safe_load(Path(x).read_text()) or {})
            files.append(CatalogFile.model_validate(raw))
        return cls(files)

    def info(self, server: str | None, tool: str) -> ToolInfo:
        key = (server or "", tool)
        ti = self._cache.get(key)
        if ti is not None:
            return ti
        s, t = key[0].lower(), tool.lower()
        caps: set[str] = set()
        arg_caps: list[tuple[str, re.Pattern[str], frozenset[str]]] = []
        dest: DestSpec | None = None
        for e in self.entries:
            if not any(fnmatch.fnmatchcase(s, g.lower()) for g in _glob_list(e.server)):
                continue
            if not any(fnmatch.fnmatchcase(t, g.lower()) for g in _glob_list(e.tool)):
                continue
            caps.update(e.caps)
            for a in e.arg_caps:
                for path in ([a.arg] if isinstance(a.arg, str) else a.arg):
                    arg_caps.append((path, re.compile(a.regex), frozenset(a.caps)))
            if dest is None and e.dest is not None:
                dest = e.dest
        ti = ToolInfo(key[0], tool, frozenset(caps), arg_caps, dest)
        if len(self._cache) > 200_000:
            self._cache.clear()
        self._cache[key] = ti
        return ti

    # -- per event -------------------------------------------------------------------
    def caps_for(self, ti: ToolInfo, args: Any) -> frozenset[str]:
        """Static capabilities plus those the tool's argument rules add for these arguments."""
        return ti.caps_of(args)

    def destinations(self, ti: ToolInfo, args: Any) -> DestInfo | None:
        spec = ti.dest
        if spec is None or not isinstance(args, dict):
            return None
        raw: list[str] = []
        for kind, a in ti.dest_plan:
            if kind == 0:  # a plain argument name: arg_values(args, a) without the path walk
                v = args.get(a)
                if type(v) is str:
                    raw.append(v)
                elif v is not None:
                    raw.extend(str(x) for x in (v if isinstance(v, list) else [v]) if isinstance(x, str | int))
            elif kind == 1:
                try:  # a plain dict raises KeyError for a missing name itself: no _Strict copy
                    raw.append(a.format_map(args if args.__class__ is dict else _Strict(args)))
                except (KeyError, ValueError, IndexError):
                    continue
            else:
                raw.extend(str(v) for v in arg_values(args, a) if isinstance(v, str | int))
        key = tuple(raw)
        memo = ti.dest_memo
        info = memo.get(key)
        if info is None:
            if len(memo) >= ARG_MEMO_MAX:
                memo.clear()
            info = memo[key] = self._classify(spec, raw)
        return info

    def _classify(self, spec: DestSpec, raw: list[str]) -> DestInfo:
        values: list[str] = []
        for r in raw:
            if spec.type == "email":
                values.extend(m.group(0).lower() for m in _EMAIL_RE.finditer(r))
            elif spec.type == "url":
                h = url_host(r)
                if h:
                    values.append(h)
            elif spec.type == "channel":
                values.append(r.strip().lstrip("#").lower())
            else:
                values.append(r.strip().lower())
        values = list(dict.fromkeys(values))
        ext = [v for v in values if self.is_external(spec.type, v)]
        return DestInfo(spec.type, values, ext, [v for v in values if v not in ext])

    def is_external(self, dtype: str, value: str) -> bool:
        key = (dtype, value)
        got = self._ext_memo.get(key)
        if got is None:
            if len(self._ext_memo) >= ARG_MEMO_MAX:
                self._ext_memo.clear()
            got = self._ext_memo[key] = self._is_external(dtype, value)
        return got

    def _is_external(self, dtype: str, value: str) -> bool:
        if dtype == "email":
            dom = value.rsplit("@", 1)[-1]
            if _globs_match(dom, self.external.email_domains):
                return True
            if _globs_match(dom, self.internal.email_domains):
                return False
        elif dtype == "channel":
            if _globs_match(value, self.external.channels):
                return True
            if _globs_match(value, self.internal.channels):
                return False
        elif dtype == "repo":
            if _globs_match(value, self.external.repos):
                return True
            if _globs_match(value, self.internal.repos):
                return False
        elif dtype == "url":
            if self._ext_hosts(value):
                return True
            if self._int_hosts(value):
                return False
        return bool(self.default_external.get(dtype, True))


class _Strict(dict):
    def __missing__(self, key: str) -> Any:
        raise KeyError(key)


def extract_urls(texts: list[str]) -> list[str]:
    out: list[str] = []
    for t in texts:
        if "://" in t:
            if t.startswith(("http://", "https://")) and " " not in t and '"' not in t and "'" not in t:
                out.append(t)
            else:
                out.extend(m.group(0) for m in _URL_RE.finditer(t))
    return out
