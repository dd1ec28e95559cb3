"""Errors shared by the CLI and command modules."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; printed without a traceback, exit code 2."""
