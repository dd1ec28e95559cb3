"""`tooltrail demo`: the whole product on one machine with realistic traffic and attacks.

1. seeds history (a couple of days of labeled traffic from detect/traffic.py, attacks
   included) through the real write path, with the detection engine attached, so the
   statistical detectors have baselines and the dashboard has something to show at once;
2. starts `tooltrail serve` (HTTP collector + live detection) and `tooltrail dashboard` as
   child processes, exactly as an operator would;
3. posts live traffic to the collector over HTTP with per-source API keys, injecting an
   attack every `attack_every` seconds, so new alerts appear within a minute;
4. stops everything cleanly on Ctrl-C (children seal their segments and sign checkpoints).
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tooltrail.logs import get_logger

log = get_logger("tooltrail.demo")
HISTORY_CHAIN = "demo-history"


@dataclass
class DemoOptions:
    api_port: int = 8080
    dashboard_port: int = 8050
    rate: float = 25.0
    attack_every: float = 20.0
    history_days: int = 2
    seed: int = 7
    duration: float | None = None
    user: str = "admin"
    password: str | None = None


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def seed_history(config: Any, days: int, seed: int) -> tuple[int, int]:
    """Import `days` of labeled traffic ending now, with detection attached. Returns
    (events stored, alerts raised). Skipped when the history chain already exists."""
    from detect.engine import DetectionEngine, Listener
    from detect.traffic import generate
    from ingest.pipeline import Ingestor

    layout = config.layout
    if HISTORY_CHAIN in layout.chain_ids():
        return 0, 0
    start = (datetime.now(UTC) - timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)
    horizon = datetime.now(UTC) - timedelta(minutes=2)
    engine = DetectionEngine.from_config(config)
    alerts = 0

    lock = threading.Lock()  # records arrive on the sealing thread, quarantine on this one

    def count(records: list[dict]) -> None:
        nonlocal alerts
        with lock:
            alerts += len(listener(records))

    def quarantined(items: list[dict]) -> None:
        with lock:
            engine.process_quarantine(items)

    listener = Listener(engine)
    stored = 0
    by_source: dict[str, list[dict]] = {}
    with Ingestor.open(config, HISTORY_CHAIN, direct=True) as ing:
        ing.add_listener(count)
        ing.add_quarantine_listener(quarantined)
        for le in generate(seed=seed, days=days + 1, principals=40, attacks=True, start=start.strftime("%Y-%m-%dT%H:%M:%SZ")):
            if le.event is None or le.event["ts"] > horizon.strftime("%Y-%m-%dT%H:%M:%S"):
                continue
            batch = by_source.setdefault(le.source, [])
            batch.append(le.event)
            if len(batch) >= 5000:
                stored += ing.submit(batch, source=le.source).stored
                batch.clear()
        for src, batch in by_source.items():
            if batch:
                stored += ing.submit(batch, source=src).stored
    engine.save_state()
    return stored, alerts


def _wait_http(url: str, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    return False


class LiveTraffic:
    """Posts the live generator's events to the collector, one API key per source."""

    def __init__(self, config: Any, api: str, opts: DemoOptions) -> None:
        self.config = config
        self.api = api
        self.opts = opts
        self.tokens: dict[str, str] = {}
        self.sent = self.rejected = 0
        self.client = httpx.Client(timeout=10)

    def mint_keys(self) -> None:
        """One ingest key per traffic source, minted before the collector starts (it loads
        its key ring at startup)."""
        from detect.traffic import Generator
        from ingest.apikeys import mint_key

        for source in Generator(self.opts.seed, 40).sources:
            self.tokens[source], _ = mint_key(self.config.layout, source, "ingest")

    def token(self, source: str) -> str:
        return self.tokens.get(source) or self.tokens[next(iter(self.tokens))]

    def items(self) -> Iterator[Any]:
        from detect.traffic import live

        return live(seed=self.opts.seed, rate=self.opts.rate, attack_every_s=self.opts.attack_every)

    def post(self, source: str, batch: list[dict]) -> None:
        for attempt in range(5):
            try:
                r = self.client.post(f"{self.api}/v1/events", json=batch,
                                     headers={"Authorization": f"Bearer {self.token(source)}"})
            except httpx.HTTPError as exc:
                log.warning("demo_post_failed", error=str(exc)[:200], attempt=attempt)
                time.sleep(1)
                continue
            if r.status_code in (429, 503):
                time.sleep(float(r.headers.get("Retry-After", "1")))
                continue
            body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            self.sent += body.get("stored", 0) + body.get("duplicates", 0)
            self.rejected += body.get("rejected", 0) if isinstance(body.get("rejected"), int) else 0
            return

    def run(self, stop_at: float | None, stop: list[bool]) -> None:
        pending: dict[str, list[dict]] = {}
        last_flush = time.monotonic()
        for le in self.items():
            if stop[0] or (stop_at is not None and time.monotonic() >= stop_at):
                break
            ev = le.event if le.event is not None else {"malformed_payload": True, "note": "demo quarantine spike"}
            pending.setdefault(le.source, []).append(ev)
            if time.monotonic() - last_flush >= 0.5:
                for src, batch in pending.items():
                    if batch:
                        self.post(src, batch)
                pending = {}
                last_flush = time.monotonic()


def run_demo(config: Any, opts: DemoOptions, *, config_path: str | None = None) -> int:
    from dashboard.users import UserStore, default_users_file

    layout = config.layout.ensure()
    # The generated organisation's own domains, channels and repos count as internal.
    demo_catalog = None
    if not config.detect.catalog_file:
        import detect

        demo_catalog = str(Path(detect.__file__).resolve().parent / "demo_catalog.yaml")
        config.detect.catalog_file = demo_catalog
    password = opts.password or secrets.token_urlsafe(12)
    UserStore(default_users_file(layout.keys)).add(opts.user, password, replace=True)

    _say(f"ToolTrail demo: data in {layout.root}")
    _say(f"  seeding {opts.history_days} days of history with injected attacks (first run only) ...")
    t0 = time.monotonic()
    stored, alerts = seed_history(config, opts.history_days, opts.seed)
    if stored:
        _say(f"  seeded {stored:,} events, {alerts} alerts in {time.monotonic() - t0:.0f}s")

    traffic = LiveTraffic(config, f"http://127.0.0.1:{opts.api_port}", opts)
    traffic.mint_keys()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    base = [sys.executable, "-m", "tooltrail", "--data-dir", str(layout.root)]
    if config_path:
        base += ["--config", config_path]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if demo_catalog:
        env["TOOLTRAIL_DETECT__CATALOG_FILE"] = demo_catalog
    procs = [
        subprocess.Popen([*base, "serve", "--port", str(opts.api_port)], env=env),  # runs live detection
        subprocess.Popen([*base, "dashboard", "--port", str(opts.dashboard_port)], env=env),
    ]
    stop = [False]

    def on_signal(signum: int, frame: Any) -> None:
        stop[0] = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    api = f"http://127.0.0.1:{opts.api_port}"
    dash = f"http://127.0.0.1:{opts.dashboard_port}"
    try:
        if not _wait_http(f"{api}/healthz") or not _wait_http(f"{dash}/login"):
            _say("demo: a service did not start; see the log lines above")
            return 1
        _say("")
        _say(f"  Dashboard:  {dash}   (user {opts.user!r}, password {password!r})")
        _say(f"  Collector:  {api}/v1/events   (live traffic ~{opts.rate:g} events/s, an attack every {opts.attack_every:g}s)")
        _say("  Ctrl-C stops everything; `tooltrail verify` checks the log afterwards.")
        _say("")
        stop_at = time.monotonic() + opts.duration if opts.duration else None
        traffic.run(stop_at, stop)
        _say(f"demo: posted {traffic.sent:,} live events; stopping services ...")
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    return 0
