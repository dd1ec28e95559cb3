"""Backtest throughput over a stored data dir (target: 10 million events in < 2 minutes).

    python benchmarks/bench_backtest.py --data-dir /var/tmp/tt-10m [--workers 1,2] [--stats] [--check]

Only reads the data dir. Prints, per worker count: wall time, events/s, CPU seconds of the
detection processes and the number of alerts; --check also asserts that every run gives the
same alerts (content, without wall-clock fields) as the first one. Build a store with e.g.
`python benchmarks/bench_store.py` (or `tooltrail import` of benchmarks/workload.py events).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detect.backtest import EngineSpec, run_backtest  # noqa: E402
from detect.stats import StatsSettings  # noqa: E402
from ingest.layout import Layout  # noqa: E402


def digest(alerts: list) -> str:
    h = hashlib.sha256()
    for a in alerts:
        h.update(a.model_dump_json(exclude={"created_at", "updated_at", "history", "status"}).encode())
    return h.hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts to run")
    ap.add_argument("--stats", action="store_true", help="with the statistical detectors (runs in one process)")
    ap.add_argument("--check", action="store_true", help="all runs must give identical alerts")
    a = ap.parse_args()
    layout = Layout.at(a.data_dir)
    spec = EngineSpec(stats=StatsSettings() if a.stats else None)
    print(f"| {'workers':>7} | {'events':>12} | {'wall s':>7} | {'events/s':>10} | {'CPU s':>7} | {'alerts':>8} | digest |")
    print(f"|{'-' * 9}|{'-' * 14}|{'-' * 9}|{'-' * 12}|{'-' * 9}|{'-' * 10}|{'-' * 18}|")
    first = None
    for w in (int(x) for x in a.workers.split(",")):
        last = [0.0]

        def progress(n: int, total: int, last: list[float] = last) -> None:
            if time.monotonic() - last[0] >= 10:
                last[0] = time.monotonic()
                print(f"  ... {n:,} / {total:,} events", file=sys.stderr)

        rep = run_backtest(layout, spec, workers=w, progress=progress, keep_alerts=a.check)
        d = digest(rep.alerts) if a.check else "-"
        print(f"| {rep.workers:>7} | {rep.events:>12,} | {rep.seconds:>7.1f} | {rep.events_per_s:>10,.0f} | "
              f"{rep.cpu_seconds:>7.1f} | {rep.alert_count:>8,} | {d:>16} |" + (f" ({rep.note})" if rep.note else ""),
              flush=True)
        if a.check:
            first = first or d
            assert d == first, f"workers={w}: alerts differ from the first run"


if __name__ == "__main__":
    main()
