"""The delivery process side: AlertStore listener -> routing -> outbox -> HTTP attempts.

    dispatcher = attach(store, config)     # in the process that owns the AlertStore
    ...
    dispatcher.close()

`on_changes` (the store listener) routes each alert change to the configured destinations and
writes the messages to the outbox (durable) before returning; a background thread sends due
messages - at most one request in flight per destination, messages of one alert in order per
destination - and schedules retries:

- success: any 2xx. 410 Gone: the message is dead-lettered and the destination disabled until
  its URL changes in the config or `tooltrail alerts enable NAME`.
- anything else (connection error, timeout, 3xx to another origin, other 4xx/5xx) is retried
  after min(backoff_max_s, backoff_base_s * 2^(attempt-1)) scaled by a jitter in [0.5, 1.0],
  or after the receiver's Retry-After (seconds or HTTP date, capped at retry_after_max_s).
- a target that resolves to a non-public address (without allow_private) is dead-lettered at once.
- after max_attempts the message is dead-lettered; `tooltrail alerts resend` queues it again.
Secrets (URLs, signing secrets, routing keys, header values) never reach a log line or the
delivery log; errors are recorded as exception type + a message with the URL removed.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from detect.delivery import netguard, payloads
from detect.delivery.outbox import Message, Outbox
from detect.delivery.signing import sign_headers
from detect.settings import WebhookDestination, check_url
from schemas.alert import Alert
from tooltrail.logs import get_logger

log = get_logger("tooltrail.delivery")
MAX_RESPONSE_BYTES = 64 * 1024
MAX_REDIRECTS = 3
POLL_S = 1.0


def parse_retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _where(exc: BaseException) -> str:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}" if tb else "?"


def backoff(dest: WebhookDestination, attempt: int, rng: random.Random) -> float:
    """Delay after failed attempt number `attempt` (1-based): exponential, capped, jittered."""
    d = min(dest.backoff_max_s, dest.backoff_base_s * (2 ** min(attempt - 1, 30)))
    return d * rng.uniform(0.5, 1.0)


class _Target:
    """A destination with its secrets resolved (kept only in memory) and its HTTP client."""

    def __init__(self, dest: WebhookDestination, env: dict[str, str] | None) -> None:
        self.dest = dest
        url = dest.resolved_url(env)
        if not url:
            raise ValueError(f"webhook {dest.name!r}: no URL (url / url_env {dest.url_env!r} unset)")
        self.url = check_url(url, dest.allow_http)
        self.secrets = dest.resolved_secrets(env)
        self.routing_key = dest.resolved_routing_key(env)
        if dest.kind == "pagerduty" and not self.routing_key:
            raise ValueError(f"webhook {dest.name!r}: no PagerDuty routing key")
        self.headers = {k: v.get_secret_value() for k, v in dest.headers.items()}
        self.fingerprint = hashlib.sha256(self.url.encode()).hexdigest()[:16]
        self.client = netguard.client(dest.allow_private)
        self.redact = [s for s in (self.url, self.routing_key, *self.secrets, *self.headers.values()) if s and len(s) >= 4]

    def clean(self, text: str) -> str:
        for s in self.redact:
            text = text.replace(s, "***")
        return text[:300]


class Dispatcher:
    def __init__(self, config: Any, *, name: str = "outbox", env: dict[str, str] | None = None,
                 rng: random.Random | None = None) -> None:
        al = config.alerting
        self.dashboard_url = al.dashboard_url
        self.retention_s = al.retention_days * 86400.0
        self.workers = al.delivery_workers
        self.name = name
        self.targets: dict[str, _Target] = {}
        try:
            for d in al.webhooks:
                self.targets[d.name] = _Target(d, env)  # ValueError for a bad destination: fail at startup
        except ValueError:
            self._close_clients()
            raise
        self.rng = rng or random.Random()
        self.outbox: Outbox | None = None
        self.active = bool(self.targets)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._busy: set[str] = set()
        self._busy_lock = threading.Lock()
        self._last_purge = 0.0
        self.stats = {"enqueued": 0, "delivered": 0, "retried": 0, "dead": 0}
        if self.active:
            try:
                self.outbox = Outbox(config.layout.state_dir, name)
            except Exception:
                self._close_clients()
                raise
            self.outbox.sync_destinations({n: t.fingerprint for n, t in self.targets.items()})
            n = self.outbox.kill_orphans(set(self.targets))
            if n:
                log.warning("delivery_orphans_dead_lettered", outbox=name, messages=n)

    def _close_clients(self) -> None:
        for t in self.targets.values():
            t.client.close()

    # -- producer side -------------------------------------------------------------------------
    def on_changes(self, changes: list[Any]) -> None:
        """AlertStore listener: route and persist; sending happens on the delivery thread."""
        if not self.active:
            return
        try:
            rows = []
            for ch in changes:
                alert: Alert = ch.alert
                event = payloads.event_for(ch.kind, alert)
                rows.extend(self._messages_for(alert, event))
            self._enqueue(rows)
        except Exception as exc:  # never break detection; loud, and the detector's replay re-enqueues
            log.error("delivery_enqueue_failed", outbox=self.name, alerts=[c.alert.alert_id for c in changes][:20],
                      error_type=type(exc).__name__, error=str(exc)[:200])

    def _messages_for(self, alert: Alert, event: str, *, only: str | None = None, force: bool = False,
                      discriminator: str | None = None) -> list[dict[str, Any]]:
        rows = []
        for name, t in self.targets.items():
            if only is not None and name != only:
                continue
            if not force and not payloads.routes(t.dest, alert, event):
                continue
            rows.append({"msg_id": payloads.message_id(name, alert, event, discriminator), "destination": name,
                         "kind": t.dest.kind, "alert_id": alert.alert_id, "event": event,
                         "payload": payloads.build(t.dest, alert, event, self.dashboard_url)})
        return rows

    def _enqueue(self, rows: list[dict[str, Any]]) -> list[str]:
        if not rows or self.outbox is None:
            return []
        new = self.outbox.enqueue(rows)
        if new:
            self.stats["enqueued"] += len(new)
            log.info("delivery_enqueued", outbox=self.name, messages=len(new))
            self._wake.set()
        return new

    def enqueue_alert(self, alert: Alert, event: str = "firing", *, destination: str | None = None,
                      force: bool = False, discriminator: str | None = None) -> list[str]:
        return self._enqueue(self._messages_for(alert, event, only=destination, force=force, discriminator=discriminator))

    # -- requests from other processes ----------------------------------------------------------
    def _apply_requests(self) -> None:
        assert self.outbox is not None
        for req in self.outbox.take_requests():
            op = req.get("op")
            try:
                if op == "resend":
                    self._resend(req)
                elif op == "enable":
                    ok = self.outbox.set_enabled(str(req.get("destination")))
                    log.info("delivery_destination_enabled", destination=req.get("destination"), found=ok)
            except Exception as exc:  # a bad request must not stop delivery
                log.warning("delivery_request_failed", op=op, error_type=type(exc).__name__, error=str(exc)[:200])

    def _resend(self, req: dict[str, Any]) -> None:
        assert self.outbox is not None
        ident, only = str(req.get("id")), req.get("destination")
        if ident.startswith("msg_"):
            ok = self.outbox.requeue(ident)
            log.info("delivery_resend", outbox=self.name, msg_id=ident, found=ok)
            return
        msgs = [m for m in self.outbox.messages_of_alert(ident) if only is None or m["destination"] == only]
        if msgs:
            latest: dict[str, dict[str, Any]] = {}
            for m in msgs:
                latest[m["destination"]] = m
            for m in latest.values():
                if m["destination"] in self.targets:
                    self.outbox.requeue(m["msg_id"])
            log.info("delivery_resend", outbox=self.name, alert_id=ident, messages=len(latest))
        elif req.get("alert"):
            alert = Alert.model_validate(req["alert"])
            new = self.enqueue_alert(alert, "resolved" if alert.status == "resolved" else "firing", destination=only,
                                     force=only is not None, discriminator=f"resend:{req.get('request_id', '')}")
            log.info("delivery_resend", outbox=self.name, alert_id=ident, messages=len(new))
        self._wake.set()

    # -- sending -----------------------------------------------------------------------------------
    def deliver(self, m: Message) -> str:
        """One attempt; records it and returns the outcome (delivered | retry | dead | gone)."""
        assert self.outbox is not None
        t = self.targets[m.destination]
        dest = t.dest
        body = payloads.finalize(m.kind, m.payload, t.routing_key)
        started = time.time()
        headers = {"content-type": "application/json", **t.headers,
                   **sign_headers(t.secrets, m.msg_id, int(started), body)}
        status: int | None = None
        error: str | None = None
        retry_after: float | None = None
        permanent = False
        t0 = time.monotonic()
        try:
            status, retry_after, error = self._post(t, body, headers, started)
        except httpx.HTTPError as exc:
            if isinstance(exc.__cause__, netguard.TargetRefused):
                permanent = True
            error = t.clean(f"{type(exc).__name__}: {exc}")
        latency_ms = round((time.monotonic() - t0) * 1000.0, 2)
        n = m.attempts + 1
        if status is not None and 200 <= status < 300:
            outcome, next_at = "delivered", None
        elif status == 410:
            outcome, next_at = "gone", None
        elif permanent or n - m.round_base >= dest.max_attempts:
            outcome, next_at = "dead", None
        else:
            delay = backoff(dest, n, self.rng)
            if retry_after is not None:
                delay = min(retry_after, dest.retry_after_max_s)
            outcome, next_at = "retry", time.time() + delay
        self.outbox.record_attempt(m, started_at=started, latency_ms=latency_ms, status=status, error=error,
                                   retry_after=retry_after, outcome=outcome, next_at=next_at)
        key = {"delivered": "delivered", "retry": "retried"}.get(outcome, "dead")
        self.stats[key] += 1
        fields = {"outbox": self.name, "destination": m.destination, "msg_id": m.msg_id, "alert_id": m.alert_id,
                  "alert_event": m.event, "attempt": n, "status": status, "latency_ms": latency_ms, "outcome": outcome}
        if outcome == "delivered":
            log.info("delivery_attempt", **fields)
        else:
            log.warning("delivery_attempt", **fields, error=error,
                        retry_in_s=round(next_at - time.time(), 3) if next_at else None)
            if outcome == "gone":
                log.error("delivery_destination_disabled", destination=m.destination, status=status)
        return outcome

    def _post(self, t: _Target, body: bytes, headers: dict[str, str], started: float) -> tuple[int, float | None, str | None]:
        url = t.url
        origin = urlsplit(url)[:2]
        deadline = time.monotonic() + t.dest.timeout_s
        for _ in range(MAX_REDIRECTS + 1):
            remaining = max(0.05, deadline - time.monotonic())
            with t.client.stream("POST", url, content=body, headers=headers, timeout=remaining) as resp:
                got = 0
                for chunk in resp.iter_raw():
                    got += len(chunk)
                    if got >= MAX_RESPONSE_BYTES or time.monotonic() > deadline:
                        break
                status = resp.status_code
                retry_after = parse_retry_after(resp.headers.get("retry-after"), time.time())
                location = resp.headers.get("location")
            if status in (307, 308) and location:
                nxt = urljoin(url, location)
                if urlsplit(nxt)[:2] != origin:
                    return status, retry_after, f"redirect to another origin refused (status {status})"
                url = nxt
                continue
            if 300 <= status < 400:
                return status, retry_after, f"redirect not followed (status {status})"
            return status, retry_after, None if status < 300 else f"HTTP {status}"
        return status, retry_after, "too many redirects"

    def run_once(self, now: float | None = None, *, wait: bool = True) -> int:
        """Apply requests, then start one attempt for each destination with a due message (at
        most one in flight per destination). Returns the number of attempts started. wait=False
        (the delivery thread) returns without waiting for them."""
        if self.outbox is None:
            return 0
        self._apply_requests()
        now = time.time() if now is None else now
        if now - self._last_purge > 3600:
            self._last_purge = now
            self.outbox.purge(now - self.retention_s)
        with self._busy_lock:
            free = set(self.targets) - self._busy
        picked: dict[str, Message] = {}
        for m in self.outbox.due(now, free):  # the oldest due message of each destination
            picked.setdefault(m.destination, m)
        if not picked:
            return 0
        with self._busy_lock:
            self._busy.update(picked)
        if self._pool is None:
            for m in picked.values():
                self._guarded(m)
            return len(picked)
        futs = [self._pool.submit(self._guarded, m) for m in picked.values()]
        if wait:
            for f in futs:
                f.result()
        return len(picked)

    def _guarded(self, m: Message) -> None:
        try:
            self.deliver(m)
        except Exception as exc:  # never let one message kill the delivery thread
            t = self.targets.get(m.destination)
            msg = t.clean(str(exc)) if t else str(exc)[:300]
            log.error("delivery_error", destination=m.destination, msg_id=m.msg_id, error_type=type(exc).__name__,
                      error=msg, where=_where(exc))
        finally:
            with self._busy_lock:
                self._busy.discard(m.destination)
            self._wake.set()

    def drain(self, timeout_s: float = 30.0) -> int:
        """Deliver until nothing is due (retries due within the timeout included) or the timeout."""
        end = time.monotonic() + timeout_s
        total = 0
        while time.monotonic() < end:
            n = self.run_once()
            total += n
            if n:
                continue
            nd = self.outbox.next_due(set(self.targets)) if self.outbox else None
            if nd is None or nd - time.time() > end - time.monotonic():
                break
            time.sleep(min(max(0.0, nd - time.time()), 0.5))
        return total

    # -- thread ------------------------------------------------------------------------------------
    def start(self) -> Dispatcher:
        if not self.active or self._thread is not None:
            return self
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=f"deliver-{self.name}")
        self._thread = threading.Thread(target=self._loop, name=f"delivery-{self.name}", daemon=True)
        self._thread.start()
        log.info("delivery_started", outbox=self.name, destinations=sorted(self.targets))
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                if self.run_once(wait=False):
                    continue
                with self._busy_lock:
                    free = set(self.targets) - self._busy
                nd = self.outbox.next_due(free) if self.outbox else None
            except Exception as exc:
                log.error("delivery_loop_error", error_type=type(exc).__name__, error=str(exc)[:200])
                nd = None
            wait = POLL_S if nd is None else min(POLL_S, max(0.01, nd - time.time()))
            self._wake.wait(wait)

    def wake(self) -> None:
        self._wake.set()

    def close(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._close_clients()
        if self.outbox is not None:
            self.outbox.close()
            self.outbox = None

    def __enter__(self) -> Dispatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def attach(store: Any, config: Any, *, name: str = "outbox", env: dict[str, str] | None = None) -> Dispatcher:
    """Deliver the alerts of `store` (an AlertStore owned by this process) to the configured
    destinations: registers the listener and starts the delivery thread. With no destinations
    configured it is a no-op Dispatcher (no outbox, no thread). Raises OutboxBusyError when
    another process owns outbox `name` (give each detector process its own name) and
    ValueError for an unusable destination."""
    d = Dispatcher(config, name=name, env=env)
    if d.active:
        store.add_listener(d.on_changes)
        d.start()
    return d
