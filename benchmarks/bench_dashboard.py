"""Dashboard page render times, measured by driving the real app in headless Chromium against
a store of a given size.

    python benchmarks/bench_dashboard.py --events 1000000              # build a store in a temp dir
    python benchmarks/bench_dashboard.py --events 10000000 --data-dir /var/tmp/tt-10m   # build once, keep
    python benchmarks/bench_dashboard.py --data-dir /var/tmp/tt-10m    # reuse an existing store as is

Building: `benchmarks/workload.py` events (about 5 events/s, so the store spans N/5 seconds up
to now) go through the real write path (`Ingestor`, direct mode), with one exfiltration chain
injected near the end; the detection rules then run over the stored records so the Alerts and
Timeline pages have an alert to open.

Measuring: the app runs in this process on a loopback port (threaded WSGI server, as
`tooltrail dashboard` runs it); Chromium signs in once, then loads each page --runs times.
A page counts as rendered when its data is on screen (a page-specific element) and no Dash
component is loading any more; the time is from navigation start. The first load of each page
is reported separately (cold: DuckDB views, OS cache), then the median and max of the rest.
Target: every page <= 1 s with 10 million stored events.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CHROMIUM = os.environ.get("TOOLTRAIL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
USER, PASSWORD = "bench", "bench-password-0001"
EXFIL_SESSION = "s-bench-exfil"
IDLE_JS = "() => document.querySelectorAll('[data-dash-is-loading=\"true\"]').length === 0"


def build_store(data_dir: Path, n: int, *, detect: bool = True, batch: int = 20_000) -> None:
    from benchmarks.workload import events
    from detect.engine import DetectionEngine
    from detect.traffic import exfiltration_session
    from ingest.pipeline import Ingestor
    from tooltrail.config import load_config

    cfg = load_config(None, data_dir=str(data_dir), env={})
    now = datetime.now(UTC) - timedelta(seconds=60)
    start = now - timedelta(seconds=n * 0.2005)
    chain = exfiltration_session("mallory", EXFIL_SESSION, start=(now - timedelta(minutes=30)).timestamp())
    chain_at = chain[0]["ts"]
    ing = Ingestor.open(cfg, "bench", direct=True)
    engine = DetectionEngine.from_config(cfg, with_stats=False) if detect else None
    t0 = time.perf_counter()
    done = 0
    items: list[dict] = []

    def flush() -> None:
        nonlocal done
        res = ing.submit(items, source="bench-gw")
        if engine is not None:
            engine.process(res.records)
        done += len(items)
        items.clear()
        rate = done / max(1e-9, time.perf_counter() - t0)
        print(f"\r  stored {done:,} / {n:,} events ({rate:,.0f}/s)", end="", file=sys.stderr, flush=True)

    try:
        for ev in events(n, seed=11, start=start):
            if chain and ev["ts"] >= chain_at:
                items.extend(chain)
                chain = []
            items.append(ev)
            if len(items) >= batch:
                flush()
        items.extend(chain)
        if items:
            flush()
        ing.flush()
    finally:
        ing.close()
    if engine is not None:
        engine.save_state()
    print(f"\n  built {done:,} events in {time.perf_counter() - t0:.0f} s", file=sys.stderr)


def measure(data_dir: Path, runs: int, host: str = "127.0.0.1") -> list[tuple[str, float, list[float]]]:
    from playwright.sync_api import sync_playwright

    from dashboard.app import create_app, start_background, users_store
    from tooltrail.config import load_config
    from tooltrail.query import ReadOnlyQuery

    cfg = load_config(None, data_dir=str(data_dir), env={})
    users = users_store(cfg)
    if not users.exists(USER):
        users.add(USER, PASSWORD)
    q = ReadOnlyQuery(cfg)
    total = q.scalar("select count(*) from events")
    alert_id = q.scalar("select alert_id from alerts where rule_id = 'TT-EXFIL-001' order by last_seen desc limit 1")
    session = q.scalar("select session from alerts where alert_id = ?", [alert_id]) if alert_id else None
    if session is None:
        session = q.scalar("select session from events order by ts desc limit 1")
    print(f"store: {data_dir} - {total:,} events; alert {alert_id}; session {session}", file=sys.stderr)

    app = create_app(cfg)
    srv, base = start_background(app, host)
    results: list[tuple[str, float, list[float]]] = []
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            pg = b.new_context(viewport={"width": 1440, "height": 900}).new_page()
            pg.set_default_timeout(120_000)
            pg.goto(base + "/login")
            pg.fill("#username", USER)
            pg.fill("#password", PASSWORD)
            pg.click("#login-submit")
            pg.wait_for_selector("#page-overview")
            pg.wait_for_function(IDLE_JS)

            def load(path: str, ready: str) -> float:
                t0 = time.perf_counter()
                pg.goto(base + path)
                pg.wait_for_selector(ready, state="attached")
                pg.wait_for_function(IDLE_JS)
                return time.perf_counter() - t0

            def click_run() -> float:
                pg.goto(base + "/query?saved=top_principals")
                pg.wait_for_selector("#q-run")
                pg.wait_for_function(IDLE_JS)
                t0 = time.perf_counter()
                pg.click("#q-run")
                pg.wait_for_selector("#q-rowcount, #q-error", state="attached")
                took = time.perf_counter() - t0
                pg.wait_for_function(IDLE_JS)
                return took

            def event_proof() -> float:
                pg.goto(base + (f"/timeline?alert={alert_id}" if alert_id else f"/timeline?session={session}"))
                pg.wait_for_selector("#tl-table td[data-dash-column='lane']")
                pg.wait_for_function(IDLE_JS)
                t0 = time.perf_counter()
                pg.locator("#tl-table td[data-dash-column='lane']").last.click()
                pg.wait_for_selector("#tl-record", state="attached")
                rec = time.perf_counter() - t0
                pg.wait_for_selector("#tl-proof-ok, #tl-proof-bad, #tl-proof-pending", state="attached")
                results.append(("  inclusion proof (async)", time.perf_counter() - t0, []))
                return rec

            timeline = f"/timeline?alert={alert_id}" if alert_id else f"/timeline?session={session}"
            pages = [
                ("Overview (24 h)", lambda: load("/?range=24h", "#kpi-events .tt-kpi-value")),
                ("Overview (7 d)", lambda: load("/?range=7d", "#kpi-events .tt-kpi-value")),
                ("Alerts", lambda: load("/alerts", "#al-table td, #al-none")),
                ("Alert detail", lambda: load(f"/alerts?id={alert_id}", "tr.tt-evidence-row")),
                ("Timeline (alert's session)", lambda: load(timeline, "#tl-highlight-count")),
                ("Timeline event detail", event_proof),
                ("Integrity", lambda: load("/integrity", "#in-chain-table")),
                ("Query page", lambda: load("/query", "#q-run")),
                ("Query: run saved query", click_run),
            ]
            if not alert_id:
                pages = [x for x in pages if x[0] != "Alert detail"]
            for name, fn in pages:
                before = len(results)
                times = [fn() for _ in range(runs + 1)]
                proofs = [r for r in results[before:]]
                del results[before:]
                results.append((name, times[0], times[1:]))
                if proofs:
                    results.append((proofs[0][0], proofs[0][1], [x[1] for x in proofs[1:]]))
            b.close()
    finally:
        srv.shutdown()
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="store size to build (default 1,000,000)")
    ap.add_argument("--data-dir", help="store to use; built there first when it holds no events")
    ap.add_argument("--runs", type=int, default=5, help="warm loads per page (default 5)")
    ap.add_argument("--no-detect", action="store_true", help="build without running the detection rules")
    args = ap.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"Chromium not found at {CHROMIUM}", file=sys.stderr)
        return 2
    tmp = None
    if args.data_dir:
        data_dir = Path(args.data_dir)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="tt-bench-dash-")
        data_dir = Path(tmp.name)
    if not (data_dir / "lake" / "manifests").exists() or not any((data_dir / "lake" / "manifests").glob("*.jsonl")):
        print(f"building a store of {args.events:,} events in {data_dir}", file=sys.stderr)
        build_store(data_dir, args.events, detect=not args.no_detect)
    results = measure(data_dir, args.runs)
    print(f"\nDashboard render times (headless Chromium, {os.cpu_count()} cores; target <= 1.000 s)\n")
    print(f"{'page':<32} {'cold s':>8} {'median s':>9} {'max s':>8}")
    print("-" * 60)
    for name, cold, warm in results:
        med = f"{statistics.median(warm):.3f}" if warm else "-"
        mx = f"{max(warm):.3f}" if warm else "-"
        print(f"{name:<32} {cold:>8.3f} {med:>9} {mx:>8}")
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
