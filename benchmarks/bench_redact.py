"""Redaction throughput on realistic tool-call events, next to the write path without it.

    python benchmarks/bench_redact.py                          # vs. orjson.dumps + sha256 stand-in
    python benchmarks/bench_redact.py --write-path ingest      # vs. the real Ingestor (WAL mode, tmp dir)
    python benchmarks/bench_redact.py --write-path pkg.mod:fn  # fn(events, redactor) -> None

A custom write path receives the events and a redactor to use: the benchmark calls it once
with a no-op redactor (the write path without redaction) and once with the real one.

Times are CPU seconds of this process (`time.process_time`, best of --repeat), so other load
on a shared machine does not distort them; redaction is single-threaded. For the write path
the wall-clock time is printed as well (it includes fsync waits and background threads).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ingest.redact import Redactor  # noqa: E402
from tests.ingest.redaction_corpus import realistic_events  # noqa: E402

WritePath = Callable[[list[dict[str, Any]], Any], None]


class NoopRedactor:
    """Same interface as Redactor, does nothing: the write path without redaction."""

    def redact_fields(self, fields: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
        return dict(fields), {}

    def redact_text(self, text: Any) -> tuple[Any, dict[str, int]]:
        return text, {}

    def redact_many(self, batch: Any) -> list[tuple[dict[str, Any], dict[str, int]]]:
        return [(f, {}) for f in batch]  # like Redactor.redact_many for events without secrets: no copy


def baseline_write_path(events: list[dict[str, Any]], redactor: Any) -> None:
    """Rough stand-in for the write path: redact, canonical-ish bytes, hash."""
    for ev in events:
        fields, _ = redactor.redact_fields(ev)
        hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).digest()


def ingest_write_path(events: list[dict[str, Any]], redactor: Any) -> None:
    """The real `ingest.pipeline.Ingestor` (WAL mode) in a temporary data dir."""
    from ingest.pipeline import Ingestor
    from tooltrail.config import load_config

    with tempfile.TemporaryDirectory(prefix="tt-bench-") as d:
        cfg = load_config(None, data_dir=d, env={})
        ing = Ingestor.open(cfg, "bench", redactor=redactor)
        try:
            for i in range(0, len(events), 500):
                ing.submit(events[i:i + 500], source="bench")
        finally:
            ing.close()


def _resolve_write_path(spec: str) -> tuple[str, WritePath]:
    if spec == "baseline":
        return "orjson.dumps+sha256 (stand-in)", baseline_write_path
    if spec == "ingest":
        return "ingest.pipeline.Ingestor", ingest_write_path
    mod, _, fn = spec.partition(":")
    return spec, getattr(importlib.import_module(mod), fn)


def _best(fn: Callable[[], None], repeat: int) -> float:
    return min(_timed(fn) for _ in range(repeat))[0]


def _timed(fn: Callable[[], None]) -> tuple[float, float]:
    """(cpu seconds, wall seconds) of one call."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.process_time() - c0, time.perf_counter() - w0


def _redact_all(r: Redactor, events: list[dict[str, Any]]) -> Callable[[], None]:
    def run() -> None:
        rf = r.redact_fields
        for ev in events:
            rf(ev)
    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--secret-ratio", type=float, default=0.05)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--write-path", default="baseline", help="baseline | ingest | module:function")
    args = ap.parse_args(argv)

    events = realistic_events(args.events, seed=7, secret_ratio=args.secret_ratio)
    r = Redactor(os.urandom(32))
    with_secret = [ev for ev in events if r.redact_fields(ev)[1]]
    clean = [ev for ev in events if not r.redact_fields(ev)[1]]
    avg_bytes = statistics.mean(len(orjson.dumps(ev)) for ev in events)

    rows: list[tuple[str, int, float]] = []
    t_all = _best(_redact_all(r, events), args.repeat)
    rows.append(("redact_fields: all events", len(events), t_all))
    rows.append(("redact_fields: events without secrets", len(clean), _best(_redact_all(r, clean), args.repeat)))
    if with_secret:
        rows.append(("redact_fields: events with secrets", len(with_secret),
                     _best(_redact_all(r, with_secret), args.repeat)))
    name, wp = _resolve_write_path(args.write_path)
    noop = NoopRedactor()
    t_wp, w_wp = min(_timed(lambda: wp(events, noop)) for _ in range(args.repeat))
    t_wp_red, w_wp_red = min(_timed(lambda: wp(events, r)) for _ in range(args.repeat))
    rows.append((f"write path without redaction: {name}", len(events), t_wp))
    rows.append((f"write path with redaction: {name}", len(events), t_wp_red))

    print(f"\nRedaction benchmark: {len(events)} realistic events, {len(with_secret)} ({len(with_secret) / len(events):.1%})"
          f" with secrets, {avg_bytes:.0f} B/event as JSON; CPU time, best of {args.repeat}\n")
    w = max(len(x[0]) for x in rows)
    print(f"| {'path':<{w}} | {'events':>7} | {'us/event':>9} | {'events/s':>11} |")
    print(f"|{'-' * (w + 2)}|{'-' * 9}|{'-' * 11}|{'-' * 13}|")
    for label, n, t in rows:
        print(f"| {label:<{w}} | {n:>7} | {t / n * 1e6:>9.2f} | {n / t:>11,.0f} |")
    red_us = t_all / len(events) * 1e6
    wp_us = t_wp / len(events) * 1e6
    print(f"\nredaction cost / write path without redaction = {red_us:.2f} / {wp_us:.2f} us = {red_us / wp_us:.0%}"
          f"  (target: < 50%)")
    print(f"measured overhead inside the write path = {(t_wp_red - t_wp) / len(events) * 1e6:.2f} us/event CPU")
    print(f"write path wall clock: {w_wp / len(events) * 1e6:.2f} us/event without, "
          f"{w_wp_red / len(events) * 1e6:.2f} us/event with redaction")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
