"""`tooltrail demo`: ingest, storage, detection and dashboard on one machine with live demo traffic."""

from __future__ import annotations

import argparse
from typing import Any

from tooltrail.commands.common import config_from_args


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="run collector + detection + dashboard with realistic demo traffic and attacks")
    p.add_argument("--api-port", type=int, default=8080)
    p.add_argument("--dashboard-port", type=int, default=8050)
    p.add_argument("--rate", type=float, default=25.0, help="live events per second (default 25)")
    p.add_argument("--attack-every", type=float, default=20.0, help="seconds between injected attacks (default 20)")
    p.add_argument("--history-days", type=int, default=2, help="days of history seeded on first run (default 2)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: until Ctrl-C)")
    p.add_argument("--user", default="admin", help="dashboard user created for the demo (default admin)")
    p.add_argument("--password", default=None, help="its password (default: a random one, printed)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from tooltrail.demo import DemoOptions, run_demo

    cfg = config_from_args(args)
    opts = DemoOptions(api_port=args.api_port, dashboard_port=args.dashboard_port, rate=args.rate,
                       attack_every=args.attack_every, history_days=args.history_days, seed=args.seed,
                       duration=args.duration, user=args.user, password=args.password)
    return run_demo(cfg, opts, config_path=args.config)
