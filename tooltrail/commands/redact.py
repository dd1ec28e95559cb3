"""`tooltrail redact marker|scan`: investigate a suspected leak without exposing the secret."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("redact", help="leak investigation: markers of a secret (stdin), scan files for unredacted secrets")
    rs = p.add_subparsers(dest="cmd", metavar="ACTION")
    rs.required = True
    m = rs.add_parser("marker", help="read a suspected secret on stdin; print the markers it is stored as")
    m.set_defaults(func=cmd_redact)
    s = rs.add_parser("scan", help="search files (default: the data dir) for anything still unredacted; exit 1 on hits")
    s.add_argument("paths", nargs="*", type=Path)
    s.set_defaults(func=cmd_redact)


def cmd_redact(args: argparse.Namespace) -> int:
    from ingest.redact_cli import run

    return run(args)
