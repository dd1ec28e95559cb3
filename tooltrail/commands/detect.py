"""Detection commands: `rules test|lint|list`, `backtest`, `eval`, `detect --follow`.
Thin: parse flags, call detect/, print."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import Any

from tooltrail.commands.common import config_from_args


def _user_error(msg: str) -> Exception:
    from tooltrail.cli import UserError

    return UserError(msg)


def register(sub: Any) -> None:
    rules = sub.add_parser("rules", help="detection rules: run embedded tests, lint, list")
    rsub = rules.add_subparsers(dest="rules_command", metavar="SUBCOMMAND")
    rsub.required = True
    t = rsub.add_parser("test", help="run every rule's embedded tests")
    t.add_argument("--rules", action="append", default=[], metavar="DIR", help="extra rule directory (repeatable)")
    t.add_argument("--no-builtin", action="store_true", help="skip the built-in pack")
    t.add_argument("-v", "--verbose", action="store_true", help="list passing tests too")
    t.set_defaults(func=cmd_rules_test)
    lint = rsub.add_parser("lint", help="validate rule files (default: built-in pack and configured rule_dirs)")
    lint.add_argument("paths", nargs="*", help="rule files or directories")
    lint.set_defaults(func=cmd_rules_lint)
    ls = rsub.add_parser("list", help="list the active rules and statistical detectors")
    ls.add_argument("--rules", action="append", default=[], metavar="DIR")
    ls.set_defaults(func=cmd_rules_list)

    b = sub.add_parser("backtest", help="replay stored history through a rule set; report alerts per day")
    b.add_argument("--since", help="event time, RFC 3339 (inclusive)")
    b.add_argument("--until", help="event time, RFC 3339 (exclusive)")
    b.add_argument("--rules", action="append", default=[], metavar="DIR", help="extra rule directory (repeatable)")
    b.add_argument("--no-builtin", action="store_true", help="only the rules given with --rules")
    b.add_argument("--no-stats", action="store_true", help="rules only, no statistical detectors")
    b.add_argument("--json", action="store_true", help="print alerts as JSON lines")
    b.add_argument("--workers", type=int, default=None,
                   help="processes, partitioned by principal (default: CPU count, at most 4; statistical detectors: 1)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.set_defaults(func=cmd_backtest)

    e = sub.add_parser("eval", help="measure detection quality on generated, labeled traffic")
    e.add_argument("--seed", type=int, default=1)
    e.add_argument("--days", type=int, default=5)
    e.add_argument("--principals", type=int, default=60)
    e.add_argument("--attacks-per-kind", type=int, default=3)
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_eval)

    d = sub.add_parser("detect", help="run the detector service over the lake (one owning process)")
    d.add_argument(
        "--follow", action="store_true", help="keep tailing new segments (default: process what is there and exit)"
    )
    d.add_argument("--poll", type=float, default=None, help="poll interval in seconds (default: detect.follow_poll_s)")
    d.set_defaults(func=cmd_detect)


def _load_rules(cfg: Any, extra: list[str], builtin: bool = True) -> list[Any]:
    from detect.rules import RuleError, load_rules

    try:
        return load_rules(list(cfg.detect.rule_dirs) + list(extra), builtin=builtin)
    except RuleError as exc:
        raise _user_error("invalid rules:\n  " + "\n  ".join(exc.problems)) from exc


def cmd_rules_test(args: argparse.Namespace) -> int:
    from detect.ruletest import run_rule_tests

    cfg = config_from_args(args)
    rules = _load_rules(cfg, args.rules, builtin=not args.no_builtin)
    results = run_rule_tests(rules, [cfg.detect.catalog_file] if cfg.detect.catalog_file else [])
    failed = [r for r in results if not r.ok]
    for r in results:
        if args.verbose or not r.ok:
            status = "ok  " if r.ok else "FAIL"
            extra = f" ({r.error})" if r.error else ("" if r.ok else f" (expected {r.expected} alerts, got {r.got})")
            print(f"{status} {r.rule_id}: {r.test}{extra}")
    print(f"{len(results) - len(failed)}/{len(results)} rule tests passed ({len(rules)} rules)")
    return 1 if failed else 0


def cmd_rules_lint(args: argparse.Namespace) -> int:
    from detect.rules import BUILTIN_RULES_DIR, lint

    cfg = config_from_args(args)
    paths = args.paths or [BUILTIN_RULES_DIR, *cfg.detect.rule_dirs]
    rules, problems = lint(paths)
    for p in problems:
        print(p)
    print(f"{len(rules)} rules valid, {len(problems)} problem(s)")
    return 1 if problems else 0


def cmd_rules_list(args: argparse.Namespace) -> int:
    from detect.stats import StatsSettings, default_detectors

    cfg = config_from_args(args)
    rules = _load_rules(cfg, args.rules)
    print(f"| {'id':<20} | {'kind':<11} | {'severity':<8} | title")
    for r in rules:
        print(f"| {r.id:<20} | {r.spec.kind:<11} | {r.spec.severity:<8} | {r.spec.title}")
    for d in default_detectors(StatsSettings()):
        print(f"| {d.meta.rule_id:<20} | {d.meta.detector[:11]:<11} | {d.meta.severity:<8} | {d.meta.title}")
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    import os
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from detect.backtest import EngineSpec, run_backtest
    from detect.engine import settings_suppressions
    from tooltrail.logs import get_logger

    cfg = config_from_args(args)
    ds = cfg.detect
    _load_rules(cfg, args.rules, builtin=not args.no_builtin)  # invalid rules: a clear error before any work
    with_stats = ds.statistical and not args.no_stats
    spec = EngineSpec(rule_dirs=tuple(map(str, ds.rule_dirs)) + tuple(args.rules), builtin_rules=not args.no_builtin,
                      catalog_files=(str(ds.catalog_file),) if ds.catalog_file else (),
                      suppressions=tuple(settings_suppressions(ds)), stats=ds.stats_settings() if with_stats else None,
                      detectors=tuple(ds.detectors) if ds.detectors is not None else None)
    workers = args.workers if args.workers is not None else min(os.cpu_count() or 1, 4)
    log = get_logger("tooltrail.backtest")
    show = not args.no_progress and sys.stderr.isatty()
    last_log = [0.0]

    def on_progress(n: int, total: int) -> None:
        prog.update(task, completed=n, total=total)
        if not show and time.monotonic() - last_log[0] >= 10:  # no terminal: a log line every 10 s
            last_log[0] = time.monotonic()
            log.info("backtest_progress", events=n, total=total)

    with Progress(TextColumn("backtest"), BarColumn(), MofNCompleteColumn(), TextColumn("events"), TimeRemainingColumn(),
                  disable=not show, transient=True) as prog:
        task = prog.add_task("backtest", total=None)
        rep = run_backtest(cfg.layout, spec, workers=workers, since=args.since, until=args.until, progress=on_progress,
                           keep_alerts=args.json, on_fallback=lambda why: log.info("backtest_one_process", reason=why))
    if args.json:
        for a in rep.alerts:
            sys.stdout.write(a.model_dump_json() + "\n")
        return 0
    print(f"replayed {rep.events:,} events in {rep.seconds:.1f}s ({rep.events_per_s:,.0f} events/s, {rep.workers} "
          f"process{'es' if rep.workers > 1 else ''}, {rep.cpu_seconds:.1f} CPU s); {rep.alert_count:,} alerts")
    if rep.per_day:
        rule_ids = sorted({r for c in rep.per_day.values() for r in c})
        print("| day        | " + " | ".join(f"{r:>19}" for r in rule_ids) + " |")
        for day in sorted(rep.per_day):
            print(f"| {day} | " + " | ".join(f"{rep.per_day[day].get(r, 0):>19}" for r in rule_ids) + " |")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from detect.evaluate import evaluate, format_table
    from tooltrail.logs import get_logger

    log = get_logger("tooltrail.eval")
    res = evaluate(
        seed=args.seed,
        days=args.days,
        principals=args.principals,
        attacks_per_kind=args.attacks_per_kind,
        progress=lambda done, total: (
            log.info("eval_progress", done=done, total=total) if done % 20_000 < 2000 else None
        ),
    )
    if args.json:
        print(json.dumps(res.to_dict(), indent=2, default=str))
    else:
        print(format_table(res))
    recall_ok = all(k["recall"] == 1.0 for k in res.kinds.values())
    return 0 if recall_ok and res.false_per_10k <= 1.0 else 1


def cmd_detect(args: argparse.Namespace) -> int:
    from detect.engine import DetectionEngine
    from detect.follow import Follower
    from detect.rules import RuleError
    from tooltrail.logs import get_logger

    cfg = config_from_args(args)
    if not cfg.detect.enabled:
        raise _user_error("detection is disabled (detect.enabled = false)")
    log = get_logger("tooltrail.detect")
    cfg.layout.ensure()
    try:
        engine = DetectionEngine.from_config(cfg)
    except RuleError as exc:
        raise _user_error("invalid rules:\n  " + "\n  ".join(exc.problems)) from exc

    def on_alerts(alerts: list[Any]) -> None:
        for a in alerts:
            log.info(
                "alert",
                alert_id=a.alert_id,
                rule_id=a.rule_id,
                severity=a.severity,
                principal=a.entities.principal,
                session=a.entities.session,
                match_count=a.match_count,
            )

    from detect.delivery import OutboxBusyError, attach

    try:
        dispatcher = attach(engine.store, cfg)
    except (OutboxBusyError, ValueError) as exc:
        raise _user_error(f"alert delivery: {exc}") from exc
    fol = Follower(cfg.layout, engine, save_every_s=cfg.detect.save_state_every_s, on_alerts=on_alerts)
    if not args.follow:
        try:
            n = fol.poll()
            engine.save_state()
        finally:
            dispatcher.close()
        log.info("detect_done", events=n, alerts_in_memory=len(engine.store.by_id))
        return 0
    stop = threading.Event()
    log.info(
        "detect_follow_start", data_dir=str(cfg.layout.root), rules=len(engine.rules), detectors=len(engine.detectors)
    )
    try:
        fol.run(stop, poll_s=args.poll or cfg.detect.follow_poll_s)
    except KeyboardInterrupt:
        stop.set()
    finally:
        dispatcher.close()
    log.info("detect_follow_stop", events=engine.stats["events"])
    return 0
