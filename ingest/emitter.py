"""Getting events from a collector (MCP proxy, server middleware) into ToolTrail without
ever blocking the tool call and without losing an event.

    emitter = open_emitter(url="http://127.0.0.1:8080", token="...", spool_dir="~/.tooltrail/spool", name="notes")
    emitter.emit(event_dict)      # never raises, never waits on the network (~10 us)
    emitter.flush(timeout=5)      # optional: wait until everything emitted so far is delivered
    emitter.close()

Design
- `emit` serialises the event and appends one line to the **spool**, a local append-only
  file (``write(2)`` into the page cache: the event survives a crash of this process from
  the moment `emit` returns; a background thread fsyncs it within ``flush_interval_s``).
- One background thread per emitter reads batches from the spool and hands them to a
  **sink**: `HttpSink` (``POST {url}/v1/events``, NDJSON, bearer token), `EmbeddedSink`
  (the in-process `ingest.pipeline.Ingestor`), or `KafkaSink`. The read position (cursor)
  only advances after the sink acknowledged the batch as durable; every event carries an
  ``event_id``, so a batch re-sent after a crash between "acked" and "cursor saved" is
  counted as duplicates by the collector, not stored twice.
- A failing sink (collector down, 5xx, 429/503, auth misconfigured) is retried with
  exponential backoff (``Retry-After`` honoured); events stay in the spool meanwhile, across
  restarts of the emitting process. Spools left behind by other processes (a crashed proxy)
  are adopted and drained.
- The spool is bounded (``max_spool_bytes``, default 1 GiB); beyond it `emit` drops and
  counts (``stats.dropped``) with an error log line - the one place an event can be lost,
  and never silently.
- Without a spool directory (``spool_dir=None``) the buffer is an in-memory bounded queue
  (``memory_items``): cheaper, but lost on a crash. The proxy always uses a spool.

Secrets in the spool: events carry raw tool arguments (redaction happens in the write path,
server side, so fingerprints use the server's HMAC key and the redaction counts reach the
detectors). Spool files are created 0600 inside a 0700 directory, segments are deleted as
soon as they are delivered, and nothing from an event is ever logged. See docs/readme/mcp.md.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import gzip
import os
import random
import re
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from tooltrail.logs import get_logger

log = get_logger("tooltrail.emitter")

SEGMENT_RE = re.compile(r"^seg-(\d{10})\.jsonl$")
DEFAULT_SEGMENT_BYTES = 4 << 20
DEFAULT_MAX_SPOOL_BYTES = 1 << 30


# --------------------------------------------------------------------------------------
# Spool
# --------------------------------------------------------------------------------------


class SpoolBusy(RuntimeError):
    """Another live process owns this spool directory."""


@dataclass(frozen=True, slots=True)
class Cursor:
    segment: int
    offset: int


@dataclass(slots=True)
class Batch:
    lines: list[bytes]
    end: Cursor
    bad: list[bytes] = field(default_factory=list)


def _seg_name(n: int) -> str:
    return f"seg-{n:010d}.jsonl"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """A durable local outbox: append-only JSONL segments plus a delivered-up-to cursor.

    Owned by one process at a time (``flock`` on ``<dir>/.lock``). Files are 0600 in a 0700
    directory. `append` is thread-safe and never fsyncs; `sync` makes appended lines durable.
    """

    def __init__(self, directory: str | os.PathLike[str], *, segment_bytes: int = DEFAULT_SEGMENT_BYTES,
                 max_bytes: int = DEFAULT_MAX_SPOOL_BYTES) -> None:
        self.dir = Path(directory).expanduser().resolve()
        self.segment_bytes = segment_bytes
        self.max_bytes = max_bytes
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        self._lock_fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise SpoolBusy(f"spool {self.dir} is in use by another process") from exc
            raise
        self._mu = threading.Lock()
        self._closed = False
        self._dirty = False
        self._torn = False
        self._to_close: list[int] = []  # rotated segment fds, fsynced+closed by `sync`
        self.cursor = self._load_cursor()
        segs = self.segments()
        if not segs:
            segs = [max(1, self.cursor.segment)]
            self.cursor = Cursor(segs[0], 0)
        self._active = segs[-1]
        if self.cursor.segment < segs[0]:
            self.cursor = Cursor(segs[0], 0)
        self._fd = os.open(self.dir / _seg_name(self._active), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._size = os.fstat(self._fd).st_size
        self._bytes_before_active = sum((self.dir / _seg_name(s)).stat().st_size for s in segs[:-1])
        if self._size and self._tail_byte() != b"\n":
            # A torn write from a crash: terminate it so it becomes one (invalid) line that
            # the reader sets aside, instead of corrupting the next appended event.
            os.write(self._fd, b"\n")
            self._size += 1
            self._dirty = True

    # ---- writer side ------------------------------------------------------------------

    def _tail_byte(self) -> bytes:
        with open(self.dir / _seg_name(self._active), "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1)

    def append(self, line: bytes) -> bool:
        """Append one event line (no trailing newline). False when the spool is full/closed."""
        data = line + b"\n"
        with self._mu:
            if self._closed:
                return False
            if self._bytes_before_active + self._size - self.cursor.offset > self.max_bytes:
                return False
            if self._torn:
                data = b"\n" + data  # end the fragment a failed write left behind
            view = memoryview(data)
            try:
                while view:
                    n = os.write(self._fd, view)
                    self._size += n
                    view = view[n:]
            except OSError:
                self._torn = True  # disk full, I/O error: the caller counts the event as dropped
                raise
            self._torn = False
            self._dirty = True
            if self._size >= self.segment_bytes:
                self._rotate_locked()
        return True

    def _rotate_locked(self) -> None:
        self._to_close.append(self._fd)
        self._bytes_before_active += self._size
        self._active += 1
        self._fd = os.open(self.dir / _seg_name(self._active), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._size = 0

    def sync(self) -> None:
        """fsync what was appended (called by the delivery thread, never on the call path)."""
        with self._mu:
            if self._closed:
                return
            old, self._to_close = self._to_close, []
            fd = os.dup(self._fd) if self._dirty else None
            self._dirty = False
        for ofd in old:
            with contextlib.suppress(OSError):
                os.fsync(ofd)
            os.close(ofd)
        if fd is not None:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        if old:
            _fsync_dir(self.dir)

    # ---- reader side ------------------------------------------------------------------

    def segments(self) -> list[int]:
        out = []
        for p in self.dir.iterdir():
            m = SEGMENT_RE.match(p.name)
            if m:
                out.append(int(m.group(1)))
        return sorted(out)

    def _load_cursor(self) -> Cursor:
        try:
            raw = orjson.loads((self.dir / "cursor.json").read_bytes())
            return Cursor(int(raw["segment"]), int(raw["offset"]))
        except FileNotFoundError:
            return Cursor(1, 0)
        except (ValueError, KeyError, TypeError):
            log.error("spool_cursor_unreadable", spool=str(self.dir), action="redeliver from the oldest segment")
            return Cursor(0, 0)

    def pending_bytes(self) -> int:
        with self._mu:
            return self._bytes_before_active + self._size - self.cursor.offset

    def drained(self) -> bool:
        with self._mu:
            return self.cursor.segment == self._active and self.cursor.offset >= self._size

    def read(self, max_items: int, max_bytes: int = 1 << 20) -> Batch:
        """Up to `max_items` complete lines after the cursor (never past what `append` finished).

        Lines that are not JSON (a write torn by a crash) come back in ``bad``; the returned
        ``end`` cursor is where the next read starts once this batch is committed."""
        cur = self.cursor
        while True:
            with self._mu:
                active, active_size = self._active, self._size
            sealed = cur.segment < active
            path = self.dir / _seg_name(cur.segment)
            if sealed:
                try:
                    file_size = path.stat().st_size
                except FileNotFoundError:
                    file_size = 0
            else:
                file_size = active_size
            avail = file_size - cur.offset
            if avail <= 0:
                if not sealed:
                    return Batch([], cur)
                nxt = [s for s in self.segments() if s > cur.segment]
                cur = Cursor(nxt[0] if nxt else active, 0)
                continue
            with open(path, "rb") as fh:
                fh.seek(cur.offset)
                chunk = fh.read(min(avail, max_bytes))
                if b"\n" not in chunk and avail > len(chunk):
                    chunk += fh.readline(avail - len(chunk))  # one line longer than max_bytes
            end = chunk.rfind(b"\n")
            if end < 0:
                if not sealed:
                    return Batch([], cur)
                end = len(chunk) - 1  # unterminated tail of a sealed segment: treat as a line
                chunk = chunk[:end] + b"\n"
            lines: list[bytes] = []
            bad: list[bytes] = []
            consumed = 0
            for raw in chunk[: end + 1].split(b"\n")[:-1]:
                if len(lines) >= max_items:
                    break
                consumed += len(raw) + 1
                if not raw.strip():
                    continue
                try:
                    orjson.loads(raw)
                except orjson.JSONDecodeError:
                    bad.append(raw)
                    continue
                lines.append(raw)
            cur = Cursor(cur.segment, cur.offset + consumed)
            if lines or bad:
                return Batch(lines, cur, bad)

    def commit(self, cursor: Cursor) -> None:
        """Record delivery up to `cursor`; delete fully delivered segments."""
        tmp = self.dir / "cursor.json.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, orjson.dumps({"segment": cursor.segment, "offset": cursor.offset}))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.dir / "cursor.json")
        removed = 0
        with self._mu:
            self.cursor = cursor
            for s in self.segments():
                if s < cursor.segment:
                    p = self.dir / _seg_name(s)
                    with contextlib.suppress(FileNotFoundError):
                        self._bytes_before_active -= p.stat().st_size
                        p.unlink()
                        removed += 1
        if removed:
            _fsync_dir(self.dir)

    def set_aside(self, lines: Iterable[bytes], why: str) -> None:
        """Keep lines that can never be delivered (torn by a crash, refused by the collector)
        in ``rejected.jsonl`` next to the spool, for review."""
        fd = os.open(self.dir / "rejected.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            for raw in lines:
                os.write(fd, orjson.dumps({"why": why, "line": raw.decode("utf-8", "replace")}) + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self, *, remove_if_drained: bool = False) -> bool:
        """Sync and release. With `remove_if_drained`, a fully delivered spool directory is
        deleted while its lock is still held (used after adopting an orphan). True if removed."""
        with self._mu:
            if self._closed:
                return False
        self.sync()
        removed = False
        with self._mu:
            self._closed = True
            os.close(self._fd)
            drained = self.cursor.segment == self._active and self.cursor.offset >= self._size
            if remove_if_drained and drained and not (self.dir / "rejected.jsonl").exists():
                try:
                    for p in self.dir.iterdir():
                        p.unlink()
                    self.dir.rmdir()
                    removed = True
                except OSError:
                    removed = False
        with contextlib.suppress(OSError):
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        os.close(self._lock_fd)
        return removed

    # ---- placement --------------------------------------------------------------------

    @classmethod
    def open_unique(cls, root: str | os.PathLike[str], name: str, **kw: Any) -> Spool:
        """``<root>/<name>``, or ``<root>/<name>.N`` when another live process holds it."""
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:100] or "default"
        root_p = Path(root).expanduser()
        root_p.mkdir(mode=0o700, parents=True, exist_ok=True)
        for i in range(256):
            try:
                return cls(root_p / (safe if i == 0 else f"{safe}.{i}"), **kw)
            except SpoolBusy:
                continue
        raise SpoolBusy(f"no free spool directory for {name!r} under {root_p}")


class MemorySpool:
    """The same interface over a bounded in-memory queue (no durability)."""

    def __init__(self, max_items: int = 10_000) -> None:
        self.max_items = max_items
        self._q: deque[bytes] = deque()
        self._mu = threading.Lock()
        self._base = 0  # items committed so far
        self.dir = None

    def append(self, line: bytes) -> bool:
        with self._mu:
            if len(self._q) >= self.max_items:
                return False
            self._q.append(line)
        return True

    def sync(self) -> None:
        return None

    def pending_bytes(self) -> int:
        with self._mu:
            return sum(len(x) + 1 for x in self._q)

    def drained(self) -> bool:
        with self._mu:
            return not self._q

    def read(self, max_items: int, max_bytes: int = 1 << 20) -> Batch:
        with self._mu:
            lines = list(self._q)[:max_items]
        return Batch(lines, Cursor(0, self._base + len(lines)))

    def commit(self, cursor: Cursor) -> None:
        with self._mu:
            for _ in range(cursor.offset - self._base):
                self._q.popleft()
            self._base = cursor.offset

    def set_aside(self, lines: Iterable[bytes], why: str) -> None:
        log.error("events_refused", count=sum(1 for _ in lines), why=why)

    def close(self) -> None:
        return None


# --------------------------------------------------------------------------------------
# Sinks
# --------------------------------------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    """What a sink did with a batch."""

    delivered: bool
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    retry_after: float | None = None  # seconds, when the sink asked for a pause
    split: bool = False  # the batch was refused as a whole: retry in smaller pieces
    refused: str | None = None  # a single event that can never be delivered, and why
    error: str | None = None


class Sink(Protocol):
    name: str

    def send(self, lines: list[bytes]) -> Outcome: ...

    def close(self) -> None: ...


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class HttpSink:
    """``POST {url}/v1/events`` with NDJSON and ``Authorization: Bearer <token>``.

    2xx means durable (the collector's contract); its ``stored``/``duplicates``/``rejected``
    counts are recorded (rejected items were quarantined server side with field + reason).
    """

    name = "http"

    def __init__(self, url: str, token: str | None, *, timeout_s: float = 10.0, gzip_min_bytes: int = 16 * 1024,
                 verify: bool | str = True) -> None:
        import httpx

        base = url.rstrip("/")
        self.endpoint = base if base.endswith("/v1/events") else base + "/v1/events"
        self._headers = {"Content-Type": "application/x-ndjson", "Accept": "application/json",
                         "User-Agent": "tooltrail-emitter/1"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._gzip_min = gzip_min_bytes
        self._client = httpx.Client(timeout=timeout_s, verify=verify)
        self._httpx = httpx

    def send(self, lines: list[bytes]) -> Outcome:
        body = b"\n".join(lines) + b"\n"
        headers = self._headers
        if len(body) >= self._gzip_min:
            body = gzip.compress(body, compresslevel=5)
            headers = {**headers, "Content-Encoding": "gzip"}
        try:
            r = self._client.post(self.endpoint, content=body, headers=headers)
        except self._httpx.HTTPError as exc:
            return Outcome(False, error=f"{type(exc).__name__}: {exc}"[:300])
        code = r.status_code
        if 200 <= code < 300:
            try:
                data = r.json()
            except ValueError:
                data = {}
            rejected = data.get("rejected") if isinstance(data, dict) else None
            n_rej = len(rejected) if isinstance(rejected, list) else int(rejected or 0)
            if n_rej:
                reasons = [{k: item.get(k) for k in ("index", "field", "reason")}
                           for item in rejected[:5] if isinstance(item, dict)] if isinstance(rejected, list) else []
                log.warning("events_rejected_by_collector", count=n_rej, examples=reasons,
                            note="quarantined by the collector with field and reason")
            return Outcome(True, stored=int(data.get("stored", 0) or 0) if isinstance(data, dict) else 0,
                           duplicates=int(data.get("duplicates", 0) or 0) if isinstance(data, dict) else 0,
                           rejected=n_rej)
        detail = r.text[:300]
        if code == 422:  # every item was rejected and quarantined by the collector: final, never resend
            try:
                data = r.json()
            except ValueError:
                data = {}
            n_rej = data.get("rejected") if isinstance(data, dict) else None
            if isinstance(n_rej, int | list):
                n = n_rej if isinstance(n_rej, int) else len(n_rej)
                log.warning("events_rejected_by_collector", count=n, note="quarantined by the collector with field and reason")
                return Outcome(True, rejected=n)
        if code in (400, 413, 422):
            if len(lines) > 1:
                return Outcome(False, split=True, error=f"HTTP {code}: {detail}")
            return Outcome(False, refused=f"HTTP {code}: {detail}")
        return Outcome(False, retry_after=_retry_after(r.headers.get("Retry-After")), error=f"HTTP {code}: {detail}")

    def close(self) -> None:
        self._client.close()


class EmbeddedSink:
    """Deliver into this machine's store through the write path (`ingest.pipeline.Ingestor`).

    Takes the chain's lock for as long as it is open (one owner per chain), so use a chain
    of its own (default ``proxy-<name>``) when `tooltrail serve` runs on the same data dir.
    """

    name = "embedded"

    def __init__(self, config: Any, *, chain_id: str, source: str) -> None:
        self.config = config
        self.chain_id = chain_id
        self.source = source
        self._ing: Any = None

    def send(self, lines: list[bytes]) -> Outcome:
        try:
            if self._ing is None:
                from ingest.pipeline import Ingestor

                self._ing = Ingestor.open(self.config, chain_id=self.chain_id)
            res = self._ing.submit(list(lines), source=self.source)
        except Exception as exc:  # lock held elsewhere, disk full, ...: keep spooled, retry
            self._reset()
            return Outcome(False, error=f"{type(exc).__name__}: {exc}"[:300])
        rejected = list(getattr(res, "rejected", []) or [])
        if rejected:
            log.warning("events_rejected_by_ingestor", count=len(rejected),
                        examples=[{"index": r.index, "field": r.field, "reason": r.reason} for r in rejected[:5]])
        return Outcome(True, stored=res.stored, duplicates=res.duplicates, rejected=len(rejected))

    def _reset(self) -> None:
        ing, self._ing = self._ing, None
        if ing is not None:
            with contextlib.suppress(Exception):
                ing.close()

    def close(self) -> None:
        self._reset()


class KafkaSink:
    """Produce each event to the ToolTrail Kafka topic through `ingest.kafka.producer.EventProducer`
    (keyed by principal, ``acks=all``, the [kafka] section's security settings), on a private
    event loop inside the delivery thread. Retries are safe: the collector dedups by event_id."""

    name = "kafka"

    def __init__(self, settings: Any = None, *, bootstrap: str | None = None, topic: str | None = None) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.topic = topic
        self._loop: Any = None
        self._producer: Any = None

    def _ensure(self) -> None:
        import asyncio

        from ingest.kafka.producer import EventProducer

        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        if self._producer is None:
            async def _start() -> Any:  # aiokafka objects must be created inside their loop
                p = EventProducer(self.settings, bootstrap=self.bootstrap, topic=self.topic)
                try:
                    return await p.start()
                except BaseException:
                    await p.stop(discard=True)
                    raise

            self._producer = self._loop.run_until_complete(_start())

    def send(self, lines: list[bytes]) -> Outcome:
        try:
            self._ensure()

            async def _send_all() -> None:
                for raw in lines:
                    await self._producer.send(raw)
                await self._producer.flush()

            self._loop.run_until_complete(_send_all())
        except Exception as exc:
            self._drop_producer()
            return Outcome(False, error=f"{type(exc).__name__}: {exc}"[:300])
        return Outcome(True, stored=len(lines))

    def _drop_producer(self) -> None:
        p, self._producer = self._producer, None
        if p is not None and self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.run_until_complete(p.stop(discard=True))

    def close(self) -> None:
        p, self._producer = self._producer, None
        if p is not None and self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.run_until_complete(p.stop())
        if self._loop is not None:
            self._loop.close()
            self._loop = None


# --------------------------------------------------------------------------------------
# Emitter
# --------------------------------------------------------------------------------------


@dataclass
class EmitterStats:
    emitted: int = 0
    dropped: int = 0
    delivered: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    refused: int = 0
    send_failures: int = 0
    last_error: str | None = None
    adopted_spools: int = 0


class Emitter:
    """Non-blocking event emission with a durable spool and a background delivery thread."""

    def __init__(self, sink: Sink | None, spool: Spool | MemorySpool, *, batch_items: int = 1000,
                 batch_bytes: int = 1 << 20, flush_interval_s: float = 0.1, max_backoff_s: float = 30.0,
                 adopt_root: str | os.PathLike[str] | None = None, adopt_interval_s: float = 30.0) -> None:
        self.sink = sink
        self.spool = spool
        self.batch_items = batch_items
        self.batch_bytes = batch_bytes
        self.flush_interval_s = flush_interval_s
        self.max_backoff_s = max_backoff_s
        self.adopt_root = Path(adopt_root).expanduser() if adopt_root else None
        self.adopt_interval_s = adopt_interval_s
        self.stats = EmitterStats()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._since_wake = 0
        self._failing = False
        self._retry_now = False
        self._last_drop_log = 0.0
        self._thread = threading.Thread(target=self._run, name="tooltrail-emitter", daemon=True)
        self._thread.start()

    # ---- call path --------------------------------------------------------------------

    def emit(self, event: dict[str, Any]) -> bool:
        """Queue one v1 event for delivery. Never raises; False if it could not be queued."""
        try:
            line = orjson.dumps(event)
            ok = self.spool.append(line)
        except Exception as exc:  # disk error: count it, never break the caller
            ok = False
            self.stats.last_error = f"spool: {type(exc).__name__}: {exc}"[:300]
        if ok:
            self.stats.emitted += 1
            self._since_wake += 1
            if self._since_wake >= self.batch_items:
                self._since_wake = 0
                self._wake.set()
            return True
        self.stats.dropped += 1
        now = time.monotonic()
        if now - self._last_drop_log > 5:
            self._last_drop_log = now
            log.error("event_dropped", dropped_total=self.stats.dropped, reason=self.stats.last_error or "spool full",
                      spool=str(getattr(self.spool, "dir", None)))
        return False

    # ---- control ----------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every event emitted so far was acknowledged by the sink."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._idle:
            while not self.spool.drained():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.set()
                self._idle.wait(min(left, 0.05))
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Try to deliver what is pending (up to `timeout`), then stop. Undelivered events stay
        in the spool for the next run."""
        if self._stop.is_set():
            return
        if self.sink is not None:
            # One more attempt right away even while backing off; a sink that is still down
            # must not hold up shutdown for long: the spool keeps the events for the next run.
            self._retry_now = True
            self.flush(min(timeout, 2.0) if self._failing else timeout)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=max(1.0, timeout))
        if self.sink is not None:
            with contextlib.suppress(Exception):
                self.sink.close()
        self.spool.close()

    def __enter__(self) -> Emitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- delivery thread --------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.0
        next_try = 0.0
        items = self.batch_items
        next_adopt = time.monotonic() + 1.0
        while True:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            stopping = self._stop.is_set()
            try:
                self.spool.sync()
            except OSError as exc:
                self.stats.last_error = f"spool sync: {exc}"
            if self.sink is None:
                if stopping:
                    return
                continue
            while not self._stop.is_set() or stopping:
                now = time.monotonic()
                if self._retry_now:
                    self._retry_now = False
                    next_try = 0.0
                if now < next_try:
                    break
                try:
                    batch = self.spool.read(items, self.batch_bytes)
                except OSError as exc:
                    self.stats.last_error = f"spool read: {exc}"
                    break
                if batch.bad:
                    self.spool.set_aside(batch.bad, "unparseable spool line (torn write during a crash)")
                    log.error("spool_lines_set_aside", count=len(batch.bad), spool=str(getattr(self.spool, "dir", "")))
                if not batch.lines:
                    if batch.bad or batch.end != getattr(self.spool, "cursor", batch.end):
                        self.spool.commit(batch.end)
                    break
                out = self._send(batch.lines)
                if out.delivered:
                    self.spool.commit(batch.end)
                    self.stats.delivered += len(batch.lines)
                    self.stats.stored += out.stored
                    self.stats.duplicates += out.duplicates
                    self.stats.rejected += out.rejected
                    if backoff:
                        log.info("delivery_recovered", sink=self.sink.name)
                    backoff = 0.0
                    self._failing = False
                    items = self.batch_items
                    continue
                if out.split:
                    items = max(1, len(batch.lines) // 2)
                    continue
                if out.refused:
                    self.spool.set_aside(batch.lines, out.refused)
                    self.spool.commit(batch.end)
                    self.stats.refused += len(batch.lines)
                    log.error("event_refused_by_collector", reason=out.refused,
                              spool=str(getattr(self.spool, "dir", "")))
                    items = self.batch_items
                    continue
                self.stats.send_failures += 1
                self.stats.last_error = out.error
                self._failing = True
                backoff = min(self.max_backoff_s, max(0.2, backoff * 2))
                wait = max(backoff * (0.5 + random.random() / 2), out.retry_after or 0.0)  # noqa: S311 - jitter
                next_try = time.monotonic() + wait
                log.warning("delivery_failed", sink=self.sink.name, error=out.error, retry_in_s=round(wait, 2),
                            pending_bytes=self.spool.pending_bytes())
                break
            with self._idle:
                self._idle.notify_all()
            if stopping:
                return
            if self.adopt_root is not None and time.monotonic() >= next_adopt and time.monotonic() >= next_try:
                next_adopt = time.monotonic() + self.adopt_interval_s
                self._adopt_orphans()

    def _send(self, lines: list[bytes]) -> Outcome:
        assert self.sink is not None
        try:
            return self.sink.send(lines)
        except Exception as exc:  # a sink bug must not kill the delivery thread
            return Outcome(False, error=f"{type(exc).__name__}: {exc}"[:300])

    def _adopt_orphans(self) -> None:
        """Drain spools left by processes that are gone (their lock is free)."""
        root = self.adopt_root
        own = getattr(self.spool, "dir", None)
        if root is None or not root.is_dir():
            return
        for d in sorted(p for p in root.iterdir() if p.is_dir() and p != own):
            if self._stop.is_set():
                return
            try:
                orphan = Spool(d)
            except (SpoolBusy, OSError):
                continue
            try:
                while not self._stop.is_set():
                    batch = orphan.read(self.batch_items, self.batch_bytes)
                    if batch.bad:
                        orphan.set_aside(batch.bad, "unparseable spool line (torn write during a crash)")
                    if not batch.lines:
                        if batch.bad:
                            orphan.commit(batch.end)
                        break
                    out = self._send(batch.lines)
                    if not out.delivered:
                        if out.refused:
                            orphan.set_aside(batch.lines, out.refused)
                            orphan.commit(batch.end)
                            continue
                        return
                    orphan.commit(batch.end)
                    self.stats.delivered += len(batch.lines)
                    self.stats.stored += out.stored
                    self.stats.duplicates += out.duplicates
                    self.stats.adopted_spools += 1
            finally:
                orphan.close(remove_if_drained=True)


# --------------------------------------------------------------------------------------
# Construction
# --------------------------------------------------------------------------------------


def default_spool_root() -> Path:
    """TOOLTRAIL_SPOOL_DIR, else $XDG_STATE_HOME/tooltrail/spool (~/.local/state/...)."""
    env = os.environ.get("TOOLTRAIL_SPOOL_DIR")
    if env:
        return Path(env).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "tooltrail" / "spool"


def open_emitter(*, name: str = "default", url: str | None = None, token: str | None = None,
                 kafka_bootstrap: str | None = None, kafka_topic: str | None = None, kafka_settings: Any = None,
                 config: Any = None, chain_id: str | None = None, source: str | None = None,
                 spool_dir: str | os.PathLike[str] | None | bool = True, memory_items: int = 10_000,
                 **emitter_kw: Any) -> Emitter:
    """Build an emitter for one destination.

    Destination (first that is given): ``url`` (HTTP collector of `tooltrail serve`),
    ``kafka_bootstrap`` / ``kafka_settings`` (an `ingest.settings.KafkaSettings`), ``config``
    (embedded write path on this machine's data dir).
    ``spool_dir``: a directory (the spool is ``<dir>/<name>``), True for the default
    (`default_spool_root`), or None/False for an in-memory bounded buffer.
    """
    sink: Sink
    if url:
        sink = HttpSink(url, token)
    elif kafka_bootstrap or kafka_settings is not None:
        sink = KafkaSink(kafka_settings, bootstrap=kafka_bootstrap, topic=kafka_topic)
    elif config is not None:
        sink = EmbeddedSink(config, chain_id=chain_id or f"proxy-{_safe_chain(name)}", source=source or f"proxy:{name}")
    else:
        raise ValueError("no destination: give a collector url, a kafka bootstrap or a config (embedded)")
    spool: Spool | MemorySpool
    if spool_dir is None or spool_dir is False:
        spool = MemorySpool(memory_items)
        root = None
    else:
        root = default_spool_root() if spool_dir is True else Path(spool_dir).expanduser()
        spool = Spool.open_unique(root, name)
    return Emitter(sink, spool, adopt_root=root, **emitter_kw)


def _safe_chain(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:100] or "default"


def emitter_from_env(name: str = "default", **kw: Any) -> Emitter:
    """For server middleware: TOOLTRAIL_COLLECTOR_URL + TOOLTRAIL_COLLECTOR_TOKEN (HTTP), or
    TOOLTRAIL_KAFKA_BOOTSTRAP (+ TOOLTRAIL_KAFKA_TOPIC); TOOLTRAIL_SPOOL_DIR for the spool
    (``none`` for an in-memory buffer)."""
    if not (os.environ.get("TOOLTRAIL_COLLECTOR_URL") or os.environ.get("TOOLTRAIL_KAFKA_BOOTSTRAP")
            or kw.get("config") is not None):
        raise ValueError("ToolTrail destination not configured: set TOOLTRAIL_COLLECTOR_URL and "
                         "TOOLTRAIL_COLLECTOR_TOKEN (HTTP collector) or TOOLTRAIL_KAFKA_BOOTSTRAP, or pass an emitter")
    spool_env = os.environ.get("TOOLTRAIL_SPOOL_DIR")
    spool: Any = kw.pop("spool_dir", None if (spool_env or "").lower() == "none" else True)
    em = open_emitter(name=name, url=os.environ.get("TOOLTRAIL_COLLECTOR_URL"),
                        token=os.environ.get("TOOLTRAIL_COLLECTOR_TOKEN"),
                        kafka_bootstrap=os.environ.get("TOOLTRAIL_KAFKA_BOOTSTRAP"),
                        kafka_topic=os.environ.get("TOOLTRAIL_KAFKA_TOPIC"),
                        spool_dir=spool, **kw)
    atexit.register(em.close, 2.0)  # a server that exits normally delivers what it can first
    return em
