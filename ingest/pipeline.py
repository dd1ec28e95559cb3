"""The write path: validate -> redact -> canonicalize -> chain -> durable -> acknowledge.

`Ingestor` owns one hash chain (one writer per chain, enforced with a lock file). Two modes:
- WAL mode (collectors): `submit` appends to the write-ahead log and returns once the batch
  is fsync'd (group commit); a background thread seals the buffered rows into immutable
  Parquet segments every `segment_max_seconds` / `segment_max_rows` and signs checkpoints.
- direct mode (file import): `submit` writes the batch straight into a sealed segment and
  returns once that is fsync'd. With `pipelined=True` the segment is written on a sealing
  thread while the caller prepares the next batch (Parquet/zstd/fsync release the GIL, so
  this uses a second core): `submit` then returns once the *previous* batch is durable, and
  `flush`/`close` wait for all. No WAL; re-running an import is idempotent (event ids).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from ingest import leafcache
from ingest.chain import chain_hash, genesis_hash
from ingest.checkpoints import CheckpointLog
from ingest.compaction import compact_chain
from ingest.layout import Layout, check_chain_id
from ingest.merkle import CompactRange
from ingest.quarantine import Quarantine, Rejection
from ingest.segments import StoredRow, live_segments, seal_segment
from ingest.signing import Signer
from ingest.wal import WalError, WriteAheadLog
from schemas.canonical import CanonicalizationError
from schemas.event import ARGS_PRECHECKED, raw_args_within_limits
from schemas.limits import MAX_EVENT_BYTES
from schemas.stored import build_record, format_ts, nested_simple, record_bytes, wire_fields, wire_fields_json
from tooltrail.logs import get_logger

log = get_logger("tooltrail.ingest")
_PRECHECKED = {ARGS_PRECHECKED: True}
COMPACT_EVERY_S = 60.0
Listener = Callable[[list[dict[str, Any]]], None]
Item = bytes | bytearray | memoryview | str | dict
_TEXT = (bytes, bytearray, memoryview, str)


class ChainBusyError(RuntimeError):
    """Another process owns this chain."""


class StoreCorruptError(RuntimeError):
    """Stored state does not link up; run `tooltrail verify`."""


@dataclass
class SubmitResult:
    stored: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"stored": self.stored, "duplicates": self.duplicates, "rejected": len(self.rejected),
                "errors": [r.as_dict() for r in self.rejected]}


def derive_event_id(fields: dict[str, Any], source: str) -> str:
    """Content-derived id for events sent without one: a retried delivery is a duplicate."""
    digest = hashlib.sha256(source.encode() + b"\x00" + orjson.dumps(fields, option=orjson.OPT_SORT_KEYS))
    return "tt-" + digest.hexdigest()[:32]


def _problem(err: Any) -> tuple[str, str]:
    """(field, reason) of one pydantic error, worded for people sending events."""
    field = ".".join(str(p) for p in err.get("loc", ())) or "(event)"
    if err.get("type") == "json_invalid":
        return "(event)", err["msg"].replace("Invalid JSON", "invalid JSON", 1)
    if err.get("type") in ("model_type", "dict_type") and field == "(event)":
        return field, "an event must be a JSON object"
    return field, err["msg"]


class Ingestor:
    def __init__(self, config: Any, chain_id: str, *, redactor: Any = None, signer: Signer | None = None,
                 direct: bool = False, pipelined: bool = False, dedupe_with: Sequence[str] = ()) -> None:
        self.config = config
        self.layout: Layout = config.layout.ensure()
        self.chain_id = check_chain_id(chain_id)
        self.direct = direct
        self.pipelined = direct and pipelined
        st = config.storage
        self._max_rows = st.segment_max_rows
        self._max_age = st.segment_max_seconds
        if redactor is None:
            from ingest.redact import Redactor

            redactor = Redactor.from_settings(config.redaction, self.layout.keys)
        self.redactor = redactor
        self.signer = signer or Signer.load(self.layout.keys, st.signing_key_file)
        self.checkpoints = CheckpointLog(self.layout, self.chain_id, self.signer, export=st.checkpoint_export,
                                         every_events=st.checkpoint_every_events,
                                         every_seconds=st.checkpoint_every_seconds)
        self.quarantine = Quarantine(self.layout, self.chain_id)
        self._lock = threading.RLock()
        self._compact_lock = threading.Lock()  # the sealer thread's compaction vs. `compact()`
        self._listeners: list[Listener] = []
        self._q_listeners: list[Listener] = []
        self._lock_fd: int | None = None
        self._closed = False
        self.counters: Counter[tuple[str, str]] = Counter()  # (source, outcome) -> events
        self._acquire_chain_lock()
        self._rows: list[StoredRow] = []
        self._rows_since = time.monotonic()
        self._recover()
        for other in dedupe_with:  # sibling chains of a parallel import share one dedupe scope
            if other != self.chain_id:
                for s in live_segments(self.layout, other):
                    self._seen.update(pq.read_table(self.layout.lake / s.path, columns=["event_id"])
                                      .column("event_id").to_pylist())
        self._wal: WriteAheadLog | None = None
        self._sealing: Future[None] | None = None  # direct mode: the segment being written
        self._seal_error: BaseException | None = None
        self._seal_pool = ThreadPoolExecutor(1, thread_name_prefix=f"seal-{chain_id}") if direct else None
        if not direct:
            self._wal = WriteAheadLog(self.layout.wal_dir / self.chain_id, durable_seq=self._next_seq - 1)
            self._wal.open_new(self._next_seq)
            self._dispatch_q: deque[StoredRow] = deque()
            self._cond = threading.Condition()
            self._stop = threading.Event()
            self._sealer = threading.Thread(target=self._seal_loop, name=f"seal-{chain_id}", daemon=True)
            self._dispatcher = threading.Thread(target=self._dispatch_loop, name=f"dispatch-{chain_id}", daemon=True)
            self._sealer.start()
            self._dispatcher.start()

    @classmethod
    def open(cls, config: Any, chain_id: str = "local", **kwargs: Any) -> Ingestor:
        return cls(config, chain_id, **kwargs)

    # ------------------------------------------------------------------ ownership & recovery
    def _acquire_chain_lock(self) -> None:
        path = self.layout.lock(self.chain_id)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise ChainBusyError(f"chain {self.chain_id!r} is owned by another process (pid {holder or '?'}); "
                                 "one writer per chain") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def _recover(self) -> None:
        segs = live_segments(self.layout, self.chain_id)
        self._next_seq = 0
        self._head = genesis_hash(self.chain_id)
        self._frontier = CompactRange()
        self._seen: set[str] = set()
        for s in segs:
            if s.first_seq != self._next_seq or s.first_prev_hash != self._head:
                raise StoreCorruptError(f"chain {self.chain_id}: segment {s.path} does not follow seq "
                                        f"{self._next_seq - 1}; run `tooltrail verify`")
            self._next_seq, self._head = s.last_seq + 1, s.last_hash
            ids = pq.read_table(self.layout.lake / s.path, columns=["event_id"]).column("event_id").to_pylist()
            self._seen.update(ids)
        if segs:
            self._frontier = CompactRange(self._next_seq, [bytes.fromhex(h) for h in segs[-1].frontier])
        # Replay the write-ahead log: every fsync'd entry past the last segment.
        wal_dir = self.layout.wal_dir / self.chain_id
        old_files = WriteAheadLog(wal_dir).files() if wal_dir.exists() else []
        replayed = 0
        for path in old_files:
            for h, prev, data in WriteAheadLog.read(path):
                record = orjson.loads(data)
                seq = record.get("seq")
                if seq is None or seq < self._next_seq:
                    continue
                leaf, expect = chain_hash(prev, data)
                if seq != self._next_seq or prev != self._head or expect != h:
                    raise StoreCorruptError(f"chain {self.chain_id}: write-ahead log {path.name} breaks at seq {seq}")
                self._rows.append(StoredRow(record, data, prev, h, leaf))
                self._frontier.append(leaf)
                self._seen.add(record["event_id"])
                self._next_seq, self._head = seq + 1, h
                replayed += 1
        if self._rows:
            self._seal(self._take_rows())
        if old_files:
            WriteAheadLog(wal_dir).drop(old_files)
        if replayed:
            log.info("wal_replayed", chain_id=self.chain_id, events=replayed)
        self.checkpoints.maybe_sign(self._next_seq, self._frontier, self._head, force=True)
        self._catch_up_leaf_cache()

    # ------------------------------------------------------------------ API
    @property
    def size(self) -> int:
        return self._next_seq

    @property
    def unsealed(self) -> int:
        return len(self._rows)

    def add_listener(self, fn: Listener) -> None:
        """fn(records) after they are durable, in seq order, on the dispatch thread."""
        self._listeners.append(fn)

    def add_quarantine_listener(self, fn: Listener) -> None:
        """fn(items) after rejected input is stored in quarantine (items as in the quarantine view)."""
        self._q_listeners.append(fn)

    def healthy(self) -> bool:
        return self._wal is None or self._wal.failed is None

    def submit(self, items: Sequence[Item], source: str, origins: Sequence[str | None] | None = None,
               mapper: Callable[[dict], dict] | None = None) -> SubmitResult:
        """Store a batch. Returns once every stored event is durable. Raises WalError (nothing
        in this batch may be acknowledged) when the log cannot be written."""
        if self._closed:
            raise RuntimeError("ingestor is closed")
        if self._seal_error is not None:
            raise StoreCorruptError(f"chain {self.chain_id}: a segment write failed ({self._seal_error}); "
                                    "reopen the chain (a re-run import is idempotent)")
        if self._wal is not None and self._wal.failed is not None:
            self.recover()
        result = SubmitResult()
        received_at = format_ts(datetime.now(UTC))
        valid: list[tuple[int, dict[str, Any], str | None]] = []
        quarantined: list[dict[str, Any]] = []
        for i, item in enumerate(items):
            origin = origins[i] if origins else None
            fields, problem = self._validate(item, mapper)
            if problem is not None:
                self._reject(result, quarantined, i, problem, item, source, origin)
                continue
            valid.append((i, fields, origin))
        prepared: list[tuple[int, dict[str, Any], dict[str, int], str | None]] = []
        for (i, _, origin), (fields, counts) in zip(valid, self.redactor.redact_many([v[1] for v in valid]), strict=True):
            if "event_id" not in fields:
                fields["event_id"] = derive_event_id(fields, source)
            prepared.append((i, fields, counts, origin))
        new_rows: list[StoredRow] = []
        with self._lock:
            # Chain state is computed in locals and committed only when the whole batch
            # chained: an unexpected error leaves no phantom entries behind.
            batch_ids: set[str] = set()
            head, seq = self._head, self._next_seq
            leaves: list[bytes] = []
            for index, fields, counts, origin in prepared:
                eid = fields["event_id"]
                if eid in self._seen or eid in batch_ids:
                    result.duplicates += 1
                    continue
                if origin is not None:
                    fields["origin"] = origin
                simple = nested_simple(fields)
                rec = build_record(fields, source=source, received_at=received_at, redactions=counts,
                                   chain_id=self.chain_id, seq=seq)
                try:
                    data = record_bytes(rec, simple)
                except CanonicalizationError as exc:
                    self._reject(result, quarantined, index, ("(event)", str(exc)), fields, source, origin)
                    continue
                leaf, h = chain_hash(head, data)
                new_rows.append(StoredRow(rec, data, head, h, leaf))
                # Listeners (detection evidence) get the chain position with the record; added
                # after hashing, so it is not part of the canonical bytes.
                rec["prev_hash"], rec["hash"] = head, h
                leaves.append(leaf)
                head, seq = h, seq + 1
                batch_ids.add(eid)
            self._frontier.extend(leaves)
            self._head, self._next_seq = head, seq
            self._seen |= batch_ids
            if not self._rows:
                self._rows_since = time.monotonic()
            self._rows.extend(new_rows)
            if not self.direct:
                self._dispatch_q.extend(new_rows)
            if self.direct:
                sealing = self._take_rows()
                frontier = self._frontier_at(sealing[-1].seq) if sealing else None
                pos = 0
            else:
                assert self._wal is not None
                pos = self._wal.append(new_rows, self._next_seq - 1) if new_rows else self._wal.position
        if self._wal is not None:
            self._wal.sync(pos)  # also covers duplicates whose first copy is still in flight
            self._notify_durable()
        else:
            self._await_seal()  # at most one batch in flight: bounded memory, and errors surface here
            if sealing:
                assert self._seal_pool is not None and frontier is not None
                self._sealing = self._seal_pool.submit(self._seal_and_notify, sealing, frontier)
                if not self.pipelined:
                    self._await_seal()
        if quarantined:
            red = self.redactor
            for q in quarantined:
                q["reasons"] = [{"field": red.redact_text(r["field"])[0], "reason": red.redact_text(r["reason"])[0]}
                                for r in q["reasons"]]
            self._store_quarantine(quarantined)
        result.stored = len(new_rows)
        result.records = [r.record for r in new_rows]
        self.counters[(source, "stored")] += result.stored
        self.counters[(source, "duplicate")] += result.duplicates
        self.counters[(source, "rejected")] += len(result.rejected)
        return result

    def quarantine_raw(self, items: Sequence[tuple[bytes | str | None, str, str | None]], source: str) -> list[dict]:
        """Quarantine input that never became an event (e.g. a null Kafka message, a payload
        that crashed a collector): (raw, reason, origin) each. Redacted, durable, and seen by
        quarantine listeners, like rejections from `submit`."""
        out = []
        for raw, reason, origin in items:
            text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else (raw or "")
            clean, counts = self.redactor.redact_text(text)
            out.append({"source": source, "origin": origin, "raw": clean, "redactions": counts,
                        "reasons": [{"field": "(event)", "reason": self.redactor.redact_text(reason)[0]}]})
        return self._store_quarantine(out)

    def _store_quarantine(self, items: list[dict[str, Any]]) -> list[dict]:
        stored = self.quarantine.store(items)
        for fn in self._q_listeners:
            try:
                fn(stored)
            except Exception as exc:
                log.error("quarantine_listener_failed", chain_id=self.chain_id, error=str(exc)[:300])
        return stored

    def flush(self) -> None:
        """Seal everything buffered now (and sign a checkpoint)."""
        self._await_seal()
        with self._lock:
            rows = self._take_rows()
        if rows:
            self._seal(rows, force_checkpoint=True)
        else:
            self.checkpoints.maybe_sign(self._next_seq, self._frontier, self._head, force=True)

    def compact(self) -> int:
        """Merge this chain's small sealed segments into larger ones (as the collectors' sealer
        thread does every minute); `flush` first to include what is still buffered or being
        sealed. Returns how many segments were merged."""
        st = self.config.storage
        with self._compact_lock:
            return compact_chain(self.layout, self.chain_id, st.compact_min_segments, st.compact_target_rows)

    def close(self) -> None:
        if self._closed:
            return
        if not self.direct:
            self._stop.set()
            with self._cond:
                self._cond.notify_all()
            self._sealer.join()
            self._dispatcher.join()
        try:
            if self._seal_error is None:  # after a failed segment write the buffered rows cannot link up
                self.flush()
        finally:
            if self._seal_pool is not None:
                self._seal_pool.shutdown(wait=True)
                self._seal_pool = None
            if self._seal_error is not None:
                self._release_chain_lock()
        if self._wal is not None:
            self._wal.close()
            self._wal.drop(self._wal.files())
        self._closed = True
        self._release_chain_lock()

    def _release_chain_lock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Ingestor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals
    def _validate(self, item: Item, mapper: Callable[[dict], dict] | None) -> tuple[dict[str, Any], Any]:
        """(fields, None) of a valid event, or ({}, problem(s))."""
        try:
            if type(item) is bytes:
                raw = item
            elif isinstance(item, dict):
                return wire_fields(mapper(item) if mapper else item), None
            elif isinstance(item, _TEXT):
                raw = item.encode() if isinstance(item, str) else bytes(item)
            else:  # a JSON array item: list, number, null
                return {}, ("(event)", "an event must be a JSON object")
            if len(raw) > MAX_EVENT_BYTES:
                return {}, ("(event)", f"event larger than {MAX_EVENT_BYTES} bytes")
            if mapper is None:  # pydantic parses and validates in one pass (no interim dict)
                return wire_fields_json(raw, _PRECHECKED if raw_args_within_limits(raw) else None), None
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                return {}, ("(event)", f"invalid JSON: {exc}")
            if not isinstance(obj, dict):
                return {}, ("(event)", "an event must be a JSON object")
            return wire_fields(mapper(obj)), None
        except ValidationError as exc:
            errs = exc.errors(include_url=False, include_input=False, include_context=False)
            return {}, [_problem(e) for e in errs]
        except (ValueError, KeyError, TypeError) as exc:  # from a gateway-format mapper
            return {}, ("(event)", f"cannot map record: {exc}")

    def _reject(self, result: SubmitResult, quarantined: list[dict[str, Any]], index: int, problem: Any,
                item: Any, source: str, origin: str | None) -> None:
        problems = problem if isinstance(problem, list) else [problem]
        for f, reason in problems:
            result.rejected.append(Rejection(index, self.redactor.redact_text(f)[0],
                                             self.redactor.redact_text(reason)[0]))
        if not isinstance(item, _TEXT):  # key-name rules apply too
            clean, counts = self.redactor.redact_value(item)
            raw = orjson.dumps(clean, default=str).decode(errors="replace")
        else:
            text = item if isinstance(item, str) else bytes(item).decode("utf-8", errors="replace")
            raw, counts = self.redactor.redact_text(text)
        quarantined.append({"source": source, "origin": origin, "raw": raw, "redactions": counts,
                            "reasons": [{"field": f, "reason": r} for f, r in problems]})

    def _take_rows(self) -> list[StoredRow]:
        rows, self._rows = self._rows, []
        return rows

    def _seal(self, rows: list[StoredRow], force_checkpoint: bool = False, frontier: CompactRange | None = None) -> None:
        """Write rows as a segment. Called with rows taken under the lock, in seq order, and
        the Merkle frontier at the last of them (taken at the head when not given)."""
        last = rows[-1].seq
        if frontier is None:
            frontier = self._frontier_at(last)
        seal_segment(self.layout, self.chain_id, rows, [n.hex() for n in frontier.nodes])
        self._cache_leaves(rows)
        self.checkpoints.maybe_sign(last + 1, frontier, rows[-1].hash, force=force_checkpoint)

    def _seal_and_notify(self, rows: list[StoredRow], frontier: CompactRange) -> None:
        """Direct mode, on the sealing thread: the segment, then listeners (records durable)."""
        self._seal(rows, frontier=frontier)
        records = [r.record for r in rows]
        for fn in self._listeners:
            fn(records)

    def _await_seal(self) -> None:
        fut, self._sealing = self._sealing, None
        if fut is None:
            return
        try:
            fut.result()
        except BaseException as exc:
            self._seal_error = exc
            raise

    def _cache_leaves(self, rows: list[StoredRow]) -> None:
        """Best effort: the proof cache never affects what is stored or acknowledged."""
        try:
            leafcache.append(self.layout, self.chain_id, rows[0].seq, [r.leaf for r in rows])
        except OSError as exc:
            log.warning("leaf_cache_append_failed", chain_id=self.chain_id, error=str(exc)[:200])

    def _catch_up_leaf_cache(self) -> None:
        sealed = self._next_seq
        lpath, _ = leafcache.paths(self.layout, self.chain_id)
        have = lpath.stat().st_size // leafcache.HASH if lpath.exists() else 0
        if have >= sealed:
            return
        log.info("leaf_cache_catch_up", chain_id=self.chain_id, leaves=sealed - have)

        def records(a: int, b: int) -> list[bytes]:
            out: list[bytes] = []
            for info in live_segments(self.layout, self.chain_id):
                if info.last_seq < a or info.first_seq >= b:
                    continue
                t = pq.read_table(self.layout.lake / info.path, columns=["seq", "record"]).sort_by("seq")
                for seq, rec in zip(t.column("seq").to_pylist(), t.column("record").cast(pa.binary()).to_pylist(),
                                    strict=True):
                    if a <= seq < b:
                        out.append(rec)
            return out

        try:
            leafcache.extend(self.layout, self.chain_id, sealed, records)
        except OSError as exc:
            log.warning("leaf_cache_catch_up_failed", chain_id=self.chain_id, error=str(exc)[:200])

    def _frontier_at(self, last_seq: int) -> CompactRange:
        # The frontier always describes the whole chain so far; rows are only taken when
        # the buffer is cut at the head, so the head frontier is the one for `last_seq`.
        if self._frontier.size != last_seq + 1:
            raise StoreCorruptError("internal: segment cut away from the chain head")
        return self._frontier.copy()

    def _seal_loop(self) -> None:
        assert self._wal is not None
        next_compaction = time.monotonic() + COMPACT_EVERY_S
        while not self._stop.wait(0.05):
            try:
                self._seal_if_due()
                if time.monotonic() >= next_compaction:
                    next_compaction = time.monotonic() + COMPACT_EVERY_S
                    st = self.config.storage
                    with self._compact_lock:
                        compact_chain(self.layout, self.chain_id, st.compact_min_segments, st.compact_target_rows)
            except Exception as exc:  # keep the loop alive; the rows stay in the WAL buffer
                log.error("seal_failed", chain_id=self.chain_id, error=str(exc)[:300])
                time.sleep(1)

    def _seal_if_due(self, force: bool = False) -> None:
        assert self._wal is not None
        with self._lock:
            if not self._rows:
                sealed, frontier, head = self._next_seq, self._frontier.copy(), self._head
                idle = True
            else:
                idle = False
        if idle:  # nothing buffered: sign the sealed tail once checkpoint_every_seconds passed
            self.checkpoints.maybe_sign(sealed, frontier, head)
            return
        with self._lock:
            if not self._rows:
                return
            due = force or len(self._rows) >= self._max_rows or time.monotonic() - self._rows_since >= self._max_age
            if not due or self._wal.failed is not None:
                return
            old_files = self._wal.files()
            self._wal.open_new(self._next_seq)  # fsyncs the old file; if it fails the rows stay buffered
            rows = self._take_rows()
            frontier = self._frontier_at(rows[-1].seq)
        self._notify_durable()
        seal_segment(self.layout, self.chain_id, rows, [n.hex() for n in frontier.nodes])
        self._cache_leaves(rows)
        self._wal.drop([p for p in old_files if p != self._wal.current])
        self.checkpoints.maybe_sign(rows[-1].seq + 1, frontier, rows[-1].hash)

    def recover(self) -> None:
        """After a failed write/fsync: rewrite the unsealed buffer into a fresh log file.
        Raises WalError while the condition (disk full, read-only) persists."""
        assert self._wal is not None
        with self._lock:
            if self._wal.failed is None:
                return
            try:
                self._wal.reset(self._rows, self._next_seq)
            except OSError as exc:
                raise WalError(f"write-ahead log still unavailable: {exc.strerror or exc}") from exc
            log.info("wal_recovered", chain_id=self.chain_id, buffered=len(self._rows))

    # Listeners get durable records in seq order, on their own thread (acks never wait on detection).
    def _notify_durable(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _dispatch_loop(self) -> None:
        assert self._wal is not None
        while True:
            with self._cond:
                if not self._stop.is_set():
                    self._cond.wait(0.2)
            durable = self._wal.durable_seq
            batch: list[dict[str, Any]] = []
            with self._lock:
                q = self._dispatch_q
                while q and q[0].seq <= durable:
                    batch.append(q.popleft().record)
            if batch:
                for fn in self._listeners:
                    try:
                        fn(batch)
                    except Exception as exc:
                        log.error("listener_failed", chain_id=self.chain_id, error=str(exc)[:300])
            elif self._stop.is_set():
                return


__all__ = ["Ingestor", "SubmitResult", "Rejection", "ChainBusyError", "StoreCorruptError", "WalError"]
