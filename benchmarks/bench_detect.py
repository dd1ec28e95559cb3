"""Detector throughput (events/s, one core) and acceptance-to-alert delay.

    python benchmarks/bench_detect.py [--events 200000] [--seed 1] [--repeat 3]

Prints a table: rules + sequences only (the target: >= 200,000 events/s on one core), rules
+ statistical detectors, and the in-process listener delay at 10,000 events/s (batches of
1,000 records, i.e. what the HTTP collector hands over after each durable batch). Records are
read back from their serialised form with the stores' reader, as backtest and follower feed
them; each figure is the median of --repeat runs, with the range beside it. The last row is
the ingest write path's events per CPU second, for comparison.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detect.alerts import AlertStore  # noqa: E402
from detect.catalog import Catalog  # noqa: E402
from detect.engine import DetectionEngine  # noqa: E402
from detect.evaluate import build_records  # noqa: E402
from detect.rules import load_rules  # noqa: E402
from detect.stats import StatsSettings, default_detectors  # noqa: E402
from detect.traffic import DEMO_CATALOG, generate  # noqa: E402
from schemas.stored import load_record  # noqa: E402


def records(n: int, seed: int) -> list[dict]:
    """n stored records as detection gets them from storage: generated, serialised and read
    back with the stores' reader (`load_record`, as backtest and follower do)."""
    out: list[dict] = []
    days = 3
    while len(out) < n:
        items = list(generate(seed=seed, days=days, principals=max(40, n // 1000), attacks=True))
        out = build_records(items, validate=False)
        days += 3
    blobs = [orjson.dumps(r) for r in out[:n]]
    del out
    gc.collect()
    return [load_record(b) for b in blobs]


def run(recs: list[dict], stats: bool, batch: int = 10_000) -> tuple[float, float, int]:
    """(events per CPU second, events per wall second, alerts). CPU time is what one core
    delivers; wall time also counts waiting for a shared core."""
    eng = DetectionEngine(load_rules(), Catalog.load([DEMO_CATALOG]), AlertStore(None),
                          detectors=default_detectors(StatsSettings()) if stats else [])
    gc.collect()
    gc.disable()
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, len(recs), batch):
        eng.process(recs[i:i + batch])
    eng.flush()
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    gc.enable()
    return len(recs) / dc, len(recs) / dt, len(eng.store)


def delay(recs: list[dict], rate: float = 10_000.0, batch: int = 1000) -> list[float]:
    """Processing time of each batch; at `rate` ev/s a batch of `batch` arrives every batch/rate s,
    the delay from acceptance to alert is at most the batch's wait + its processing time."""
    eng = DetectionEngine(load_rules(), Catalog.load([DEMO_CATALOG]), AlertStore(None),
                          detectors=default_detectors(StatsSettings()))
    out = []
    for i in range(0, len(recs), batch):
        t0 = time.perf_counter()
        eng.process(recs[i:i + batch])
        out.append(time.perf_counter() - t0)
    return out


def ingest_rate(n: int = 100_000) -> float:
    """The write path beside it: events per CPU second (all threads) of Ingestor.submit in
    direct mode (validate, redact, canonicalise, chain, Parquet, fsync) on workload events."""
    from benchmarks.workload import events
    from ingest.pipeline import Ingestor
    from tooltrail.config import load_config

    lines = [orjson.dumps(e) for e in events(n)]
    with tempfile.TemporaryDirectory() as d:
        ing = Ingestor.open(load_config(data_dir=d), "bench", direct=True)
        c0 = time.process_time()
        for i in range(0, n, 20_000):
            ing.submit(lines[i:i + 20_000], source="bench")
        ing.close()
        return n / (time.process_time() - c0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3, help="runs per detector set (the median is reported)")
    a = ap.parse_args()
    t0 = time.perf_counter()
    recs = records(a.events, a.seed)
    print(f"generated {len(recs)} stored records in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    rows = []
    for name, stats in (("rules + sequences (14 rules)", False), ("rules + statistical detectors", True)):
        runs = sorted((run(recs, stats=stats) for _ in range(a.repeat)), key=lambda r: r[0])
        mid = runs[len(runs) // 2]
        rows.append((name, mid[0], mid[1], mid[2], runs[0][0], runs[-1][0]))
    d = delay(recs[: min(len(recs), 100_000)])
    batch_wait = 1000 / 10_000.0
    med = statistics.median(d) + batch_wait / 2
    p99 = sorted(d)[int(len(d) * 0.99) - 1] + batch_wait
    print(f"median of {a.repeat} runs (each a fresh engine over the same records); min-max of the CPU figure beside it")
    print(f"| {'detector set':<32} | {'events/s (1 core, CPU)':>22} | {'min - max':>19} "
          f"| {'events/s (wall)':>15} | {'alerts':>6} |")
    print(f"|{'-' * 34}|{'-' * 24}|{'-' * 21}|{'-' * 17}|{'-' * 8}|")
    for name, eps, wall, n, lo, hi in rows:
        print(f"| {name:<32} | {eps:>22,.0f} | {f'{lo:,.0f} - {hi:,.0f}':>19} | {wall:>15,.0f} | {n:>6} |")
    print(f"| {'ingest write path (1 chain)':<32} | {ingest_rate():>22,.0f} | {'':>19} | {'':>15} | {'':>6} |")
    print()
    print(f"listener delay at 10,000 events/s (batches of 1,000): median {med * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms "
          f"(batch processing median {statistics.median(d) * 1000:.1f} ms)")


if __name__ == "__main__":
    main()
