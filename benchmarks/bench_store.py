"""Foundation benchmark: import and verify throughput, and session lookups in a big store.

    python benchmarks/bench_store.py                       # 1M events, workers 1 and 2
    python benchmarks/bench_store.py --events 200000       # quicker
    python benchmarks/bench_store.py --lookup-events 10000000 --lookup-dir /var/tmp/tt10m   # 10M store (built once, reused)

Prints, in one run on this machine: the floor (orjson parse + SHA-256 + pyarrow Parquet write
of the same events, no product code), `tooltrail import` (the real CLI, a separate process)
with 1 and 2 workers without and with its final compaction, `tooltrail verify`, and session
lookups through the read-only query layer. Not a timed test: figures go to the README and closing notes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.workload import write_jsonl  # noqa: E402


def floor(path: Path, out_dir: Path, batch: int = 20_000) -> float:
    """Parse + hash + Parquet write of the same events, no product code."""
    t0 = time.perf_counter()
    n = 0
    buf: list[bytes] = []

    def flush(i: int) -> None:
        ds = [orjson.loads(x) for x in buf]
        for d, x in zip(ds, buf, strict=True):
            d["hash"] = hashlib.sha256(x).hexdigest()
            d["args"] = orjson.dumps(d["args"]).decode()
        pq.write_table(pa.Table.from_pylist(ds), out_dir / f"floor-{i}.parquet", compression="zstd")

    with open(path, "rb") as fh:
        for i, line in enumerate(fh):
            buf.append(line)
            if len(buf) >= batch:
                flush(i)
                n += len(buf)
                buf = []
    if buf:
        flush(-1)
        n += len(buf)
    return n / (time.perf_counter() - t0)


def run_cli(args: list[str], data_dir: Path) -> tuple[float, str]:
    env = dict(os.environ, TOOLTRAIL_DATA_DIR=str(data_dir), PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "tooltrail.cli", *args], env=env, capture_output=True, cwd=ROOT)
    dt = time.perf_counter() - t0
    if proc.returncode not in (0, 3):
        raise SystemExit(f"tooltrail {' '.join(args)} failed: {proc.stderr.decode()[-2000:]}")
    return dt, proc.stdout.decode()


def run_verify(data_dir: Path) -> tuple[float, int, int]:
    """Wall time of the real `tooltrail verify` (process start to exit), and the events and
    chains it reports; a failed verification is an error, not a figure."""
    dt, out = run_cli(["verify", "--json"], data_dir)
    report = json.loads(out)
    if not report["ok"]:
        raise SystemExit(f"verify failed on {data_dir}: {out[-2000:]}")
    return dt, report["events"], len(report["chains"])


def lookups(data_dir: Path, samples: int = 30) -> tuple[float, float, int]:
    from tooltrail.query import ReadOnlyQuery

    q = ReadOnlyQuery.at(data_dir)
    total = q.scalar("select count(*) from events")
    sessions = [r["session"] for r in q.rows("select distinct session from events using sample 2000 rows", limit=2000)]
    random.Random(3).shuffle(sessions)
    q.rows("select * from events where session = ? order by seq", [sessions[0]])  # warm the file list
    times = []
    for s in sessions[:samples]:
        t0 = time.perf_counter()
        rows = q.rows("select * from events where session = ? order by seq", [s], limit=10_000)
        times.append((time.perf_counter() - t0) * 1000)
        assert rows, s
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1], total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--lookup-events", type=int, default=0, help="also build/reuse a store of this size for lookups")
    ap.add_argument("--lookup-dir", default=None)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tt-bench-"))
    src = work / "events.jsonl"
    write_jsonl(str(src), args.events)
    mb = src.stat().st_size / 1e6
    rows: list[tuple[str, str]] = []
    fl = floor(src, work)
    rows.append(("floor: parse + sha256 + Parquet write (no product code)", f"{fl:,.0f} events/s"))
    # The floor writes each event once; so does `import --no-compact`. The default import then
    # merges its batch-sized segments into large ones (a second write), reported on its own row.
    runs = [(1, True), (2, True), (2, False)]
    for workers, no_compact in runs:
        d = work / f"data-{workers}{'' if no_compact else '-compacted'}"
        dt, out = run_cli(["import", str(src), "--no-progress", "--workers", str(workers),
                           *(["--no-compact"] if no_compact else [])], d)
        stored = json.loads(out.strip().splitlines()[-1])["stored"]
        rate = stored / dt
        how = "--no-compact" if no_compact else "with its compaction (default)"
        rows.append((f"tooltrail import {how}, {workers} worker(s) ({mb:.0f} MB, real CLI)",
                     f"{rate:,.0f} events/s = {rate / fl:.2f}x floor"))
    for workers, no_compact in runs:
        dt, events, chains = run_verify(work / f"data-{workers}{'' if no_compact else '-compacted'}")
        rows.append((f"tooltrail verify ({events:,} events, {chains} chain(s)"
                     f"{'' if no_compact else ', compacted'})", f"{events / dt:,.0f} events/s"))
    p50, p95, total = lookups(work / "data-2-compacted")
    rows.append((f"session lookup in {total:,} events (p50 / p95)", f"{p50:.1f} ms / {p95:.1f} ms"))

    if args.lookup_events:
        big = Path(args.lookup_dir or (work / "big"))
        from tooltrail.query import ReadOnlyQuery

        have = ReadOnlyQuery.at(big).scalar("select count(*) from events") if big.exists() else 0
        if have < args.lookup_events:
            big_src = work / "big.jsonl"
            write_jsonl(str(big_src), args.lookup_events - have, seed=2 + have)
            run_cli(["import", str(big_src), "--no-progress", "--workers", "2"], big)  # compacts at the end
            big_src.unlink()
        p50, p95, total = lookups(big)
        rows.append((f"session lookup in {total:,} events (p50 / p95)", f"{p50:.1f} ms / {p95:.1f} ms"))
        dt, events, chains = run_verify(big)
        rows.append((f"tooltrail verify ({events:,} events, {chains} chain(s))", f"{events / dt:,.0f} events/s"))

    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure'.ljust(width)}  result")
    for name, val in rows:
        print(f"{name.ljust(width)}  {val}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
