"""Dashboard commands: `tooltrail dashboard` serves the SOC dashboard; `tooltrail users ...`
manages its local users (argon2id hashes in <data>/keys/dashboard-users.json, mode 0600)."""

from __future__ import annotations

import argparse
import getpass
import sys

from tooltrail.commands.common import config_from_args
from tooltrail.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dashboard", help="serve the SOC dashboard (login required; 127.0.0.1:8050 by default)")
    p.add_argument("--host", help="bind address (default dashboard.host = 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default dashboard.port = 8050; 0 picks a free one)")
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("users", help="manage local dashboard users")
    usub = p.add_subparsers(dest="users_command", metavar="ACTION")
    usub.required = True
    a = usub.add_parser("add", help="create a user (asks for the password twice)")
    a.add_argument("name")
    a.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    a.add_argument("--replace", action="store_true", help="set a new password for an existing user")
    a.set_defaults(func=cmd_users_add)
    r = usub.add_parser("remove", help="delete a user")
    r.add_argument("name")
    r.set_defaults(func=cmd_users_remove)
    ls = usub.add_parser("list", help="list user names")
    ls.set_defaults(func=cmd_users_list)


def _store(args: argparse.Namespace):
    from dashboard.app import users_store

    cfg = config_from_args(args)
    cfg.layout.keys.mkdir(mode=0o700, parents=True, exist_ok=True)
    return users_store(cfg)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from dashboard.app import run

    cfg = config_from_args(args)
    if args.port is not None and not 0 <= args.port <= 65535:
        raise UserError("--port must be 0..65535")
    run(cfg, host=args.host, port=args.port)
    return 0


def cmd_users_add(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"Password for {args.name}: ")
        if getpass.getpass("Repeat: ") != password:
            raise UserError("the passwords differ")
    try:
        store.add(args.name, password, replace=args.replace)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    print(f"user {args.name} {'updated' if args.replace else 'created'} in {store.path}")
    return 0


def cmd_users_remove(args: argparse.Namespace) -> int:
    if not _store(args).remove(args.name):
        raise UserError(f"no user {args.name!r}")
    print(f"user {args.name} removed; their sessions end at their next request")
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    for name in _store(args).names():
        print(name)
    return 0
