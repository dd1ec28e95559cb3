"""Helpers shared by command modules: config loading from the global flags."""

from __future__ import annotations

import argparse

from tooltrail.config import Config, load_config


def config_from_args(args: argparse.Namespace) -> Config:
    try:
        return load_config(getattr(args, "config", None), data_dir=getattr(args, "data_dir", None))
    except (OSError, ValueError) as exc:
        from tooltrail.cli import UserError

        raise UserError(f"configuration: {exc}") from exc
