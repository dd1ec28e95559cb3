"""Structured JSON log lines to stderr for every service (structlog).

Importing this module configures structlog once (JSON to stderr, level info), so library
code never prints to stdout - stdout belongs to command output and to stdio MCP transports.
The CLI calls `configure_logging(level)` to change the level. Loggers look up `sys.stderr`
when they write, so a replaced stream (test capture, daemonisation) is always honoured."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog


class StderrHandler(logging.StreamHandler):
    """A stdlib handler bound to whatever sys.stderr is at the time of each record."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _stderr_logger(*_: Any) -> structlog.PrintLogger:
    return structlog.PrintLogger(file=sys.stderr)


def configure_logging(level: str = "info") -> None:
    lvl = getattr(logging, level.upper(), logging.INFO)
    root = logging.getLogger()
    if not any(isinstance(h, StderrHandler) for h in root.handlers):
        handler = StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
    root.setLevel(lvl)
    # httpx logs every request URL at INFO; webhook URLs carry secrets (Slack paths, tokens).
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(lvl, logging.WARNING))
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)


if not structlog.is_configured():
    configure_logging()
