"""`tooltrail` command line: a thin dispatcher. Each command lives in tooltrail/commands/<name>.py
and exposes `register(subparsers)`; the logic it calls lives in schemas/, ingest/, detect/,
dashboard/ or the read layer."""

from __future__ import annotations

import argparse
import importlib
import sys

from ingest.runtime import tune_gc
from tooltrail.errors import UserError
from tooltrail.logs import configure_logging, get_logger

__all__ = ["UserError", "main", "build_parser"]

# One line per command module; each registers one or more subcommands.
COMMAND_MODULES = (
    "tooltrail.commands.dashboard",
    "tooltrail.commands.store",
    "tooltrail.commands.detect",
    "tooltrail.commands.proxy",
    "tooltrail.commands.kafka",
    "tooltrail.commands.serve",
    "tooltrail.commands.demo",
    "tooltrail.commands.redact",
    "tooltrail.commands.investigate",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tooltrail", description="Tamper-evident audit log and anomaly detector for AI-agent tool calls.")
    parser.add_argument("--data-dir", default=None, help="data directory (env TOOLTRAIL_DATA_DIR, default ./tooltrail-data)")
    parser.add_argument("--config", default=None, help="TOML configuration file (env TOOLTRAIL_CONFIG)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    tune_gc()
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        code = args.func(args)
    except UserError as exc:
        print(f"tooltrail: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # last resort: a log line, never a secret-bearing traceback dump of data
        get_logger("tooltrail").error("command_failed", command=args.command, error_type=type(exc).__name__, error=str(exc)[:500])
        return 1
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
