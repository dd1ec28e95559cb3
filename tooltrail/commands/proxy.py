"""`tooltrail proxy`: run the auditing MCP proxy; `tooltrail proxy-token`: mint a front token.

    tooltrail proxy --name notes -- python notes_server.py            # wrap a stdio server, serve stdio
    tooltrail proxy --name gh --url https://mcp.example/mcp --serve http --port 8765
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import ipaddress
import os
import re
import secrets
import signal
import sys
from pathlib import Path
from typing import Any

from tooltrail.logs import get_logger

log = get_logger("tooltrail.proxy")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "proxy", help="auditing MCP proxy in front of a stdio or Streamable HTTP MCP server",
        description="Forward MCP traffic unchanged and record one audit event per tools/call. "
                    "Upstream: `-- COMMAND ARGS...` (stdio) or --url (Streamable HTTP).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  tooltrail proxy --name notes -- python notes_server.py\n"
               "  tooltrail proxy --name gh --url https://mcp.example.com/mcp --serve http --port 8765 "
               "--auth-tokens tokens.toml\n"
               "delivery: --collector URL (token in $TOOLTRAIL_COLLECTOR_TOKEN) or, by default, straight into "
               "the local data dir\n(chain proxy-NAME). Events are spooled on disk first; nothing is lost while "
               "the collector is down.")
    p.add_argument("--name", required=True, help="server name recorded on every event (e.g. the mcpServers key)")
    p.add_argument("--url", help="Streamable HTTP upstream URL (instead of a command)")
    p.add_argument("--upstream-header", action="append", default=[], metavar="'NAME: VALUE'",
                   help="header sent to an HTTP upstream; ${VAR} is expanded from the environment (repeatable)")
    p.add_argument("--upstream-mode", default="legacy",
                   help="protocol negotiation with the upstream: legacy (initialize, default), auto, or a version")
    p.add_argument("--serve", choices=["stdio", "http"], default="stdio", help="front transport (default stdio)")
    p.add_argument("--host", default="127.0.0.1", help="HTTP front bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="HTTP front port (default 8765)")
    p.add_argument("--path", default="/mcp", help="HTTP front path (default /mcp)")
    p.add_argument("--auth-tokens", metavar="FILE",
                   help="TOML file of front bearer tokens (sha256, principal, scopes); see `tooltrail proxy-token`")
    p.add_argument("--insecure-no-auth", action="store_true",
                   help="allow an HTTP front on a non-loopback address without --auth-tokens")
    p.add_argument("--principal", help="principal for callers without a token (default $TOOLTRAIL_PRINCIPAL, "
                                       "else os:<user>)")
    p.add_argument("--scopes", default=None, help="comma-separated scopes granted to that principal")
    p.add_argument("--agent", help="agent name (default: the MCP client's clientInfo name/version)")
    p.add_argument("--session", help="fixed session id (default: MCP session id, else one per proxy process)")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="label added to every event")
    p.add_argument("--policy", metavar="FILE", help="allow/deny lists and required scopes (TOML/YAML/JSON)")
    p.add_argument("--collector", default=os.environ.get("TOOLTRAIL_COLLECTOR_URL"),
                   help="URL of a running `tooltrail serve` (env TOOLTRAIL_COLLECTOR_URL); token from "
                        "$TOOLTRAIL_COLLECTOR_TOKEN or --collector-token-file")
    p.add_argument("--collector-token-file", metavar="FILE", help="file holding the collector's API key")
    p.add_argument("--kafka", action="store_true", help="deliver to the Kafka topic of the [kafka] config section")
    p.add_argument("--chain", help="chain id for embedded delivery (default proxy-NAME)")
    p.add_argument("--spool-dir", default=None,
                   help="spool root (env TOOLTRAIL_SPOOL_DIR; default <data-dir>/state/spool when a data dir is "
                        "given, else ~/.local/state/tooltrail/spool)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS... of a stdio MCP server")
    p.set_defaults(func=run)

    t = sub.add_parser("proxy-token", help="mint a bearer token for the proxy's HTTP front",
                       description="Prints a new random token once, and the TOML entry (its SHA-256 only) to "
                                   "append to the --auth-tokens file.")
    t.add_argument("token_name", help="name of the token (recorded as token_id)")
    t.add_argument("--principal", required=True)
    t.add_argument("--scopes", default="", help="comma-separated scopes")
    t.set_defaults(func=run_token)


def _split_csv(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [s.strip() for s in value.split(",") if s.strip()]


def _pairs(items: list[str], sep: str, what: str) -> dict[str, str]:
    from tooltrail.cli import UserError

    out: dict[str, str] = {}
    for item in items:
        k, ok, v = item.partition(sep)
        if not ok or not k.strip():
            raise UserError(f"{what} {item!r}: expected KEY{sep}VALUE")
        out[k.strip()] = v.strip()
    return out


def _expand(value: str) -> str:
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: os.environ.get(m.group(1), ""), value)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _spool_root(args: argparse.Namespace, config: Any) -> Path:
    from ingest.emitter import default_spool_root

    if args.spool_dir:
        return Path(args.spool_dir).expanduser()
    if os.environ.get("TOOLTRAIL_SPOOL_DIR"):
        return default_spool_root()
    if getattr(args, "data_dir", None) or os.environ.get("TOOLTRAIL_DATA_DIR"):
        return config.layout.state_dir / "spool"
    return default_spool_root()


def run(args: argparse.Namespace) -> int:
    from ingest.emitter import open_emitter
    from ingest.mcp.middleware import AuditSettings
    from ingest.mcp.policy import Policy
    from ingest.mcp.proxy import HashedTokenVerifier, ProxyOptions, build_proxy
    from tooltrail.cli import UserError
    from tooltrail.commands.common import config_from_args

    command = list(args.command or [])
    if command and command[0] == "--":
        command = command[1:]
    if bool(command) == bool(args.url):
        raise UserError("give the upstream either as `-- COMMAND ARGS...` (stdio) or with --url (HTTP)")
    config = config_from_args(args)
    try:
        policy = Policy.load(args.policy) if args.policy else None
        verifier = HashedTokenVerifier.load(args.auth_tokens) if args.auth_tokens else None
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    if args.serve == "http" and verifier is None and not _is_loopback(args.host) and not args.insecure_no_auth:
        raise UserError(f"refusing to serve HTTP on {args.host} without --auth-tokens "
                        "(pass --insecure-no-auth to override)")
    headers = {k: _expand(v) for k, v in _pairs(args.upstream_header, ":", "--upstream-header").items()}
    labels = _pairs(args.label, "=", "--label")
    audit = AuditSettings(server=args.name, principal=args.principal, scopes=_split_csv(args.scopes),
                          agent=args.agent, session=args.session, labels=labels, policy=policy)
    opts = ProxyOptions(name=args.name, command=command or None, url=args.url, upstream_headers=headers,
                        upstream_mode=args.upstream_mode, audit=audit)

    token = os.environ.get("TOOLTRAIL_COLLECTOR_TOKEN")
    if args.collector_token_file:
        try:
            token = Path(args.collector_token_file).read_text("utf-8").strip()
        except OSError as exc:
            raise UserError(f"--collector-token-file: {exc}") from exc
    kw: dict[str, Any] = {"name": args.name, "spool_dir": _spool_root(args, config)}
    if args.collector:
        if not token:
            raise UserError("--collector needs the collector's API key: set TOOLTRAIL_COLLECTOR_TOKEN or pass "
                            "--collector-token-file (mint one with `tooltrail keys create proxy-NAME`)")
        kw.update(url=args.collector, token=token)
        where = args.collector
    elif args.kafka:
        kw.update(kafka_settings=config.kafka)
        where = f"kafka {config.kafka.bootstrap} {config.kafka.topic}"
    else:
        kw.update(config=config, chain_id=args.chain or None, source=f"proxy:{args.name}")
        where = f"embedded {config.layout.root}"
    emitter = open_emitter(**kw)
    built = build_proxy(opts, emitter, auth=verifier)
    log.info("proxy_start", name=args.name, upstream=args.url or command[0], serve=args.serve,
             destination=where, spool=str(getattr(emitter.spool, "dir", None)),
             policy=bool(policy), auth=bool(verifier))
    try:
        asyncio.run(_main(built, args))
    except KeyboardInterrupt:
        pass
    finally:
        emitter.close(timeout=5)
        s = emitter.stats
        log.info("proxy_stop", emitted=s.emitted, delivered=s.delivered, dropped=s.dropped,
                 pending_bytes=emitter.spool.pending_bytes(), last_error=s.last_error)
    return 0


async def _main(built: Any, args: argparse.Namespace) -> None:
    from ingest.mcp.proxy import serve

    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await serve(built, transport=args.serve, host=args.host, port=args.port, path=args.path)


def run_token(args: argparse.Namespace) -> int:
    token = "ttp_" + secrets.token_urlsafe(32)
    digest = hashlib.sha256(token.encode()).hexdigest()
    scopes = _split_csv(args.scopes) or []
    print(f"token (shown once): {token}", file=sys.stderr)
    print(f'[tokens.{args.token_name}]\nsha256 = "{digest}"\nprincipal = "{args.principal}"\n'
          f"scopes = [{', '.join(repr(s).replace(chr(39), chr(34)) for s in scopes)}]")
    return 0
