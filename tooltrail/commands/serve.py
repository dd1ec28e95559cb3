"""`tooltrail serve`: the HTTP collector + read API; `tooltrail keys`: mint, list, revoke API keys.

    tooltrail keys create gateway-1            # ingest key: events get source=gateway-1
    tooltrail keys create dashboard --read     # read key for the read API
    tooltrail serve                            # 127.0.0.1:8080, chain "http"
    tooltrail serve --workers 2                # 2 processes, chains http-0 and http-1
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tooltrail.commands.common import config_from_args

# Startup hooks run in every collector process with its Ingestor ("module:function", called as
# fn(ingestor)); e.g. live detection attaches its engine with ingestor.add_listener(...).
SERVE_HOOKS: tuple[str, ...] = ()
LIVE_DETECTION = "detect.live:attach"


def register(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the HTTP collector and read API (127.0.0.1:8080 by default)",
                       description="POST /v1/events (ingest keys), GET /v1/events, /v1/sessions/{id}/timeline, "
                                   "/v1/verify, /v1/proofs/{id} (read keys), /healthz, /readyz, /metrics.")
    p.add_argument("--host", default=None, help="bind address (default http.host = 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default http.port = 8080; 0 = any free port)")
    p.add_argument("--chain", default=None, help="hash chain to write (default http.chain = http)")
    p.add_argument("--workers", type=int, default=None,
                   help="collector processes; worker i owns chain <chain>-<i> (default http.workers = 1)")
    p.add_argument("--hook", action="append", default=[], metavar="MODULE:FUNC",
                   help="call FUNC(ingestor) in every collector process at startup (repeatable)")
    p.add_argument("--no-detect", action="store_true",
                   help="do not run detection in this process (run `tooltrail detect --follow` instead); "
                        "implied by --workers > 1 and by detect.enabled = false")
    p.set_defaults(func=cmd_serve)

    k = sub.add_parser("keys", help="API keys of the HTTP collector: create, list, revoke")
    ks = k.add_subparsers(dest="keys_command", metavar="ACTION")
    ks.required = True
    c = ks.add_parser("create", help="mint a key; prints the token once (only its SHA-256 is stored)")
    c.add_argument("name", help="ingest key: the source recorded on events; read key: the reader's name")
    c.add_argument("--read", action="store_true", help="a read-API key instead of an ingest key")
    c.add_argument("--json", action="store_true", help="print {name, kind, key_id, token} as JSON")
    c.set_defaults(func=cmd_keys_create)
    ls = ks.add_parser("list", help="list keys (never tokens)")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_keys_list)
    rv = ks.add_parser("revoke", help="delete every stored key with this name or key id")
    rv.add_argument("name_or_id")
    rv.set_defaults(func=cmd_keys_revoke)


def cmd_serve(args: argparse.Namespace) -> int:
    from ingest.apikeys import ApiKeyError, KeyRing
    from ingest.http.server import serve
    from ingest.pipeline import ChainBusyError
    from tooltrail.cli import UserError

    cfg = config_from_args(args)
    if args.workers is not None and args.workers < 1:
        raise UserError("--workers must be at least 1")
    if args.chain is not None:
        from ingest.layout import check_chain_id

        try:
            check_chain_id(args.chain)
        except ValueError as exc:
            raise UserError(str(exc)) from exc
    try:
        KeyRing.from_config(cfg)  # fail early on a bad key file / configured key
    except ApiKeyError as exc:
        raise UserError(str(exc)) from exc
    hooks = [*SERVE_HOOKS, *args.hook]
    workers = args.workers or cfg.http.workers
    # Live detection: exactly one process per data dir owns the alert store, so only a
    # single collector process runs it; with several, the detector service does.
    if cfg.detect.enabled and not args.no_detect and LIVE_DETECTION not in hooks:
        if workers == 1:
            hooks.append(LIVE_DETECTION)
        else:
            print("tooltrail: detection is not run inside a multi-process collector; "
                  "run `tooltrail detect --follow` beside it", file=sys.stderr)
    try:
        return serve(cfg, host=args.host, port=args.port, chain=args.chain, workers=args.workers,
                     hooks=hooks, log_level=args.log_level, config_path=args.config)
    except ChainBusyError as exc:
        raise UserError(str(exc)) from exc
    except OSError as exc:
        raise UserError(f"cannot listen: {exc.strerror or exc}") from exc


def cmd_keys_create(args: argparse.Namespace) -> int:
    from ingest.apikeys import ApiKeyError, mint_key
    from tooltrail.cli import UserError

    cfg = config_from_args(args)
    try:
        token, key = mint_key(cfg.layout.ensure(), args.name, "read" if args.read else "ingest")
    except ApiKeyError as exc:
        raise UserError(str(exc)) from exc
    if args.json:
        print(json.dumps({"name": key.name, "kind": key.kind, "key_id": key.key_id, "token": token}))
    else:
        print(token)
        import sys

        print(f"{key.kind} key {key.key_id} for {key.name!r}: shown once, only its hash is stored "
              f"({cfg.layout.keys}/api_keys.json)", file=sys.stderr)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from ingest.apikeys import ApiKeyError, KeyRing
    from tooltrail.cli import UserError

    cfg = config_from_args(args)
    try:
        keys = KeyRing.from_config(cfg).keys
    except ApiKeyError as exc:
        raise UserError(str(exc)) from exc
    rows = [k.public() for k in keys]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['key_id']}  {r['kind']:<6}  {r['name']:<32}  {r['origin']:<6}  {r['created_at']}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from ingest.apikeys import revoke_key
    from tooltrail.cli import UserError

    cfg = config_from_args(args)
    n = revoke_key(cfg.layout, args.name_or_id)
    if not n:
        raise UserError(f"no stored key named or with id {args.name_or_id!r} (keys from the config file are "
                        "removed there)")
    print(f"revoked {n} key(s); running servers stop accepting them within a second")
    return 0
