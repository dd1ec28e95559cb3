"""Kafka collector: a consumer-group member that writes each assigned partition to its own chain.

    collector = KafkaCollector(config)                  # settings from config.kafka
    stats = asyncio.run(collector.run())                # until request_stop() / SIGTERM

Guarantees (DESIGN.md principle 1):
- **Ack after durable.** A partition's offset is committed only after `Ingestor.submit` returned
  for every message below it, i.e. after the events are fsync'd (or quarantined, fsync'd too).
- **No loss, no duplicates across crashes and rebalances.** Every stored event carries
  ``origin = kafka:<topic>:<partition>:<offset>`` in its hashed record. When a partition is
  assigned, the collector opens its chain (taking the chain lock: one writer per chain), reads the
  highest stored offset and resumes from ``max(committed, stored + 1)``. A crash between fsync and
  commit therefore re-reads nothing that was stored; and the Ingestor additionally drops repeated
  ``event_id``\\s within the chain (producer retries, replays).
- **Rebalances flush.** The rebalance listener waits for the batch in flight, commits, and
  closes the revoked partitions' chains (seal, sign a checkpoint, release the lock) before the
  group moves on; a new owner that still finds a chain locked (its old owner is a zombie) pauses
  that partition and retries until the lock is free.
- **Poison messages never block.** Invalid JSON, invalid events and oversized messages are
  quarantined (redacted, with topic/partition/offset and the reason) by the Ingestor; null
  values and messages that make the write path raise are quarantined here; the partition moves
  on. With ``dead_letter_topic`` set, rejected messages are also produced there with headers
  ``tooltrail-origin`` and ``tooltrail-reason``.
- **Lag is visible.** A ``kafka_lag`` log line every ``lag_log_interval_s`` (per partition: durable
  offset, committed offset, high watermark, lag) and, with ``metrics_port``, Prometheus gauges.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from ingest.kafka.metrics import CollectorMetrics
from ingest.kafka.naming import chain_id_for, origin_for
from ingest.kafka.resume import last_quarantined_offset, last_stored_offset
from ingest.kafka.security import client_kwargs, describe
from ingest.pipeline import ChainBusyError, Ingestor, StoreCorruptError, SubmitResult
from ingest.settings import KafkaSettings
from ingest.wal import WalError
from tooltrail.logs import get_logger

log = get_logger("tooltrail.kafka")

NULL_REASON = "empty Kafka message (null value / tombstone)"
RETRY_OPEN_S = 1.0
MAX_BACKOFF_S = 30.0
COMMIT_TIMEOUT_S = 30.0  # a commit is retried by aiokafka while the coordinator is unreachable; bound it


@dataclass
class PartitionState:
    topic: str
    partition: int
    chain_id: str
    ingestor: Ingestor
    next_offset: int | None = None  # every offset below is durable (stored, duplicate or quarantined)
    committed: int | None = None
    last_stored: int | None = None  # highest offset found in the chain when it was opened
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0


@dataclass
class CollectorStats:
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    dead_lettered: int = 0
    dead_letter_failures: int = 0
    batches: int = 0
    rebalances: int = 0
    commit_failures: int = 0
    write_failures: int = 0
    first_fetch_at: float | None = None  # wall clock: first records fetched, first / last batch durable
    first_durable_at: float | None = None
    last_durable_at: float | None = None

    @property
    def handled(self) -> int:
        return self.stored + self.duplicates + self.quarantined

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _BatchOutcome:
    result: SubmitResult
    quarantined: int
    dead: list[tuple[Any, str]] = field(default_factory=list)  # (message, reason) for the dead-letter topic


class CollectorFatal(RuntimeError):
    """The collector cannot continue safely (e.g. a chain could not be closed); restart it."""


class KafkaCollector:
    def __init__(self, config: Any, settings: KafkaSettings | None = None, *,
                 on_batch: Callable[[str, SubmitResult], None] | None = None) -> None:
        self.config = config
        self.settings = settings or config.kafka
        self.topic = self.settings.topic
        self.source = self.settings.source or f"kafka:{self.topic}"
        self.stats = CollectorStats()
        self.metrics = CollectorMetrics()
        self.metrics_port: int | None = None
        self._on_batch = on_batch
        self._parts: dict[Any, PartitionState] = {}
        self._pending: dict[Any, float] = {}  # assigned but not open (chain busy/corrupt) -> next retry (monotonic)
        self._consumer: Any = None
        self._dlq: Any = None
        self._lock: asyncio.Lock | None = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fatal: BaseException | None = None
        self._backoff = 0.0
        self._shared: dict[str, Any] = {}  # one Redactor and Signer for every chain of this process

    # ------------------------------------------------------------------ control
    def request_stop(self) -> None:
        """Thread- and signal-safe: finish the batch in flight, commit, close the chains, leave the group."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    @property
    def assigned(self) -> list[int]:
        return sorted(st.partition for st in self._parts.values())

    # ------------------------------------------------------------------ main loop
    async def run(self, *, until_idle_s: float | None = None, ready: Callable[[], None] | None = None) -> CollectorStats:
        """Consume until `request_stop()` (or, with `until_idle_s`, until nothing arrived for that
        long after partitions were assigned and drained). Returns the counters."""
        s = self.settings
        self._loop = asyncio.get_running_loop()
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        kw = client_kwargs(s)
        await asyncio.to_thread(self._load_keys)
        consumer = AIOKafkaConsumer(
            group_id=s.group, enable_auto_commit=False, auto_offset_reset=s.auto_offset_reset,
            max_partition_fetch_bytes=s.max_partition_fetch_bytes, fetch_max_bytes=s.fetch_max_bytes,
            session_timeout_ms=s.session_timeout_ms, heartbeat_interval_ms=s.heartbeat_interval_ms,
            max_poll_interval_ms=s.max_poll_interval_ms, rebalance_timeout_ms=s.rebalance_timeout_ms,
            group_instance_id=s.group_instance_id, **kw)
        self._consumer = consumer
        consumer.subscribe([self.topic], listener=_Listener(self))
        if s.metrics_port is not None:
            self.metrics_port = self.metrics.start(s.metrics_host, s.metrics_port)
        log.info("kafka_collector_starting", topic=self.topic, group=s.group, source=self.source,
                 dead_letter_topic=s.dead_letter_topic, metrics_port=self.metrics_port, **describe(s))
        try:
            await consumer.start()
            if s.dead_letter_topic:
                self._dlq = AIOKafkaProducer(acks="all", enable_idempotence=s.producer_idempotence, linger_ms=5, **kw)
                await self._dlq.start()
            if ready is not None:
                ready()
            await self._loop_until_stopped(until_idle_s)
        finally:
            await self._shutdown()
        if self._fatal is not None:
            raise CollectorFatal(str(self._fatal)) from self._fatal
        return self.stats

    async def _loop_until_stopped(self, until_idle_s: float | None) -> None:
        assert self._stop is not None and self._lock is not None
        s = self.settings
        consumer = self._consumer
        next_lag = time.monotonic() + s.lag_log_interval_s
        idle_since = time.monotonic()
        while not self._stop.is_set() and self._fatal is None:
            if self._pending:
                await self._retry_pending()
            if self._backoff:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self._backoff)
                if self._stop.is_set():
                    break
            batch = await consumer.getmany(timeout_ms=500, max_records=s.max_batch)
            now = time.monotonic()
            if batch:
                self.stats.first_fetch_at = self.stats.first_fetch_at or time.time()
                async with self._lock:
                    await self._process(batch)
                idle_since = now
            elif (until_idle_s is not None and self._parts and not self._pending and now - idle_since >= until_idle_s
                  and self._caught_up()):
                log.info("kafka_idle_exit", idle_s=until_idle_s)
                break
            if now >= next_lag:
                next_lag = now + s.lag_log_interval_s
                self.log_lag()

    def _caught_up(self) -> bool:
        for tp, st in self._parts.items():
            hw = self._consumer.highwater(tp)
            if hw is None or (st.next_offset or 0) < hw:
                return False
        return True

    # ------------------------------------------------------------------ one batch
    async def _process(self, batch: dict[Any, list[Any]]) -> None:
        t0 = time.monotonic()
        jobs: list[tuple[PartitionState, list[Any]]] = []
        for tp, msgs in batch.items():
            st = self._parts.get(tp)
            if st is None:
                # Not open (yet): never consume past these records. Revoked partitions restart from the
                # commit / the chain on their next assignment anyway.
                if msgs and tp in self._consumer.assignment():
                    self._consumer.seek(tp, msgs[0].offset)
                continue
            if st.next_offset is not None:
                msgs = [m for m in msgs if m.offset >= st.next_offset]
            if msgs:
                jobs.append((st, msgs))
        if not jobs:
            return
        results = await asyncio.gather(*(asyncio.to_thread(self._store, st, msgs) for st, msgs in jobs),
                                       return_exceptions=True)
        offsets: dict[Any, int] = {}
        dead: list[tuple[PartitionState, Any, str]] = []
        failed = False
        for (st, msgs), out in zip(jobs, results, strict=True):
            tp = _tp(st)
            if isinstance(out, BaseException):
                # Nothing of this batch may be acknowledged: go back to the first message not known durable.
                failed = True
                self.stats.write_failures += 1
                log.error("kafka_store_failed", chain_id=st.chain_id, partition=st.partition, first_offset=msgs[0].offset,
                          error_type=type(out).__name__, error=str(out)[:300])
                with contextlib.suppress(Exception):
                    self._consumer.seek(tp, msgs[0].offset)
                continue
            res = out.result
            st.next_offset = msgs[-1].offset + 1
            st.stored += res.stored
            st.duplicates += res.duplicates
            st.quarantined += out.quarantined
            offsets[tp] = st.next_offset
            self.stats.stored += res.stored
            self.stats.duplicates += res.duplicates
            self.stats.quarantined += out.quarantined
            self.metrics.count("stored", res.stored)
            self.metrics.count("duplicate", res.duplicates)
            self.metrics.count("quarantined", out.quarantined)
            dead.extend((st, m, reason) for m, reason in out.dead)
            if self._on_batch is not None:
                self._on_batch(st.chain_id, res)
        self._backoff = min(MAX_BACKOFF_S, max(1.0, self._backoff * 2)) if failed else 0.0
        if offsets:
            now = time.time()
            self.stats.batches += 1
            self.stats.first_durable_at = self.stats.first_durable_at or now
            self.stats.last_durable_at = now
        if dead and self._dlq is not None:
            await self._dead_letter(dead)
        await self._commit(offsets)
        self.metrics.batch_took(time.monotonic() - t0)

    def _store(self, st: PartitionState, msgs: list[Any]) -> _BatchOutcome:
        """Runs on a worker thread (fsync releases the GIL; other partitions proceed meanwhile)."""
        ing = st.ingestor
        values: list[bytes] = []
        origins: list[str] = []
        kept: list[Any] = []
        nulls: list[Any] = []
        for m in msgs:
            if m.value is None:
                nulls.append(m)
                continue
            values.append(m.value)
            origins.append(origin_for(st.topic, st.partition, m.offset))
            kept.append(m)
        try:
            res = ing.submit(values, source=self.source, origins=origins) if values else SubmitResult()
        except WalError:
            raise
        except Exception as exc:  # a message the write path chokes on must not block the partition
            log.error("kafka_batch_isolating", chain_id=st.chain_id, error_type=type(exc).__name__, error=str(exc)[:300])
            res = self._store_one_by_one(st, values, origins)
        if nulls:
            ing.quarantine_raw([(None, NULL_REASON, origin_for(st.topic, st.partition, m.offset)) for m in nulls],
                               source=self.source)
        reasons: dict[int, list[str]] = {}
        for r in res.rejected:
            reasons.setdefault(r.index, []).append(f"{r.field}: {r.reason}")
        dead = [(kept[i], "; ".join(rs)[:1000]) for i, rs in sorted(reasons.items()) if 0 <= i < len(kept)]
        dead += [(m, NULL_REASON) for m in nulls]
        return _BatchOutcome(res, len(reasons) + len(nulls), dead)

    def _store_one_by_one(self, st: PartitionState, values: list[bytes], origins: list[str]) -> SubmitResult:
        from ingest.quarantine import Rejection

        ing = st.ingestor
        total = SubmitResult()
        for i, (value, origin) in enumerate(zip(values, origins, strict=True)):
            try:
                res = ing.submit([value], source=self.source, origins=[origin])
            except WalError:
                raise
            except Exception as exc:
                reason = f"the write path failed on this message ({type(exc).__name__})"
                ing.quarantine_raw([(bytes(value[:64 * 1024]), reason, origin)], source=self.source)
                total.rejected.append(Rejection(i, "(event)", reason))
                log.error("kafka_message_quarantined", origin=origin, error_type=type(exc).__name__)
                continue
            total.stored += res.stored
            total.duplicates += res.duplicates
            total.records.extend(res.records)
            total.rejected.extend(Rejection(i, r.field, r.reason) for r in res.rejected)
        return total

    async def _dead_letter(self, dead: list[tuple[PartitionState, Any, str]]) -> None:
        """Copy rejected messages to the dead-letter topic. The quarantine (already durable) is the
        system of record, so a failure here is logged and counted, never blocks the partition."""
        assert self._dlq is not None
        topic = self.settings.dead_letter_topic
        try:
            futs = []
            for st, m, reason in dead:
                headers = [("tooltrail-origin", origin_for(st.topic, st.partition, m.offset).encode()),
                           ("tooltrail-reason", reason.encode("utf-8", errors="replace")),
                           ("tooltrail-source", self.source.encode())]
                futs.append(await self._dlq.send(topic, value=m.value, key=m.key, headers=headers))
            await asyncio.gather(*futs)
            self.stats.dead_lettered += len(dead)
            self.metrics.count("dead_lettered", len(dead))
        except Exception as exc:
            self.stats.dead_letter_failures += len(dead)
            log.error("kafka_dead_letter_failed", topic=topic, messages=len(dead), error_type=type(exc).__name__,
                      error=str(exc)[:300])

    async def _commit(self, offsets: dict[Any, int]) -> bool:
        if not offsets:
            return True
        try:
            await asyncio.wait_for(self._consumer.commit(offsets), COMMIT_TIMEOUT_S)
        except TimeoutError:
            self.stats.commit_failures += 1
            log.warning("kafka_commit_failed", reason="timeout", timeout_s=COMMIT_TIMEOUT_S)
            return False
        except (CommitFailedError, IllegalStateError) as exc:
            # The group moved on; the events are durable and carry their offsets, so the next
            # owner resumes after them (resume from the chain), not from this lost commit.
            self.stats.commit_failures += 1
            log.warning("kafka_commit_failed", reason=type(exc).__name__, partitions=sorted(tp.partition for tp in offsets))
            return False
        except KafkaError as exc:
            self.stats.commit_failures += 1
            log.warning("kafka_commit_failed", reason=type(exc).__name__, error=str(exc)[:200])
            return False
        for tp, off in offsets.items():
            st = self._parts.get(tp)
            if st is not None:
                st.committed = off
        return True

    # ------------------------------------------------------------------ rebalances
    async def _on_revoked(self, revoked: set[Any]) -> None:
        assert self._lock is not None
        async with self._lock:  # waits for the batch in flight
            self.stats.rebalances += 1
            self.metrics.rebalanced()
            for tp in revoked:
                self._pending.pop(tp, None)
            states = [self._parts[tp] for tp in revoked if tp in self._parts]
            await self._commit({_tp(st): st.next_offset for st in states
                                if st.next_offset is not None and st.next_offset != st.committed})
            for st in states:
                self._parts.pop(_tp(st), None)
            await self._close_states(states)
            self.metrics.set_assigned(len(self._parts))
            if states:
                log.info("kafka_partitions_revoked", partitions=sorted(st.partition for st in states),
                         chains=[st.chain_id for st in states])

    async def _close_states(self, states: list[PartitionState]) -> None:
        results = await asyncio.gather(*(asyncio.to_thread(st.ingestor.close) for st in states), return_exceptions=True)
        for st, res in zip(states, results, strict=True):
            self.metrics.drop_partition(st.topic, st.partition)
            if isinstance(res, BaseException):
                # The chain lock may still be held: stop so the process exits and the lock is released;
                # a restart replays the write-ahead log.
                log.error("kafka_chain_close_failed", chain_id=st.chain_id, error_type=type(res).__name__, error=str(res)[:300])
                self._fatal = self._fatal or res
                if self._stop is not None:
                    self._stop.set()

    async def _on_assigned(self, assigned: set[Any]) -> None:
        assert self._lock is not None
        async with self._lock:
            todo = [tp for tp in sorted(assigned, key=lambda t: (t.topic, t.partition)) if tp not in self._parts]
            if todo:
                # Nothing may be consumed from a partition before its chain is open and its resume
                # offset is known: paused partitions are neither fetched nor returned by getmany.
                self._consumer.pause(*todo)
            for tp in todo:
                await self._open_partition(tp)
            self.metrics.set_assigned(len(self._parts))
            log.info("kafka_partitions_assigned", partitions=self.assigned,
                     waiting=sorted(tp.partition for tp in self._pending))

    async def _open_partition(self, tp: Any) -> None:
        chain = chain_id_for(tp.topic, tp.partition, self.settings.chain_prefix)
        try:
            ing, last = await asyncio.to_thread(self._open_chain, chain, tp.topic, tp.partition)
        except Exception as exc:  # busy (zombie owner), corrupt, I/O: keep the partition paused and retry
            busy = isinstance(exc, ChainBusyError)
            backoff = RETRY_OPEN_S if busy else (MAX_BACKOFF_S if isinstance(exc, StoreCorruptError) else 5.0)
            (log.warning if busy else log.error)("kafka_partition_waiting", chain_id=chain, partition=tp.partition,
                                                 reason=type(exc).__name__, error=str(exc)[:300], retry_in_s=backoff)
            self._consumer.pause(tp)
            self._pending[tp] = time.monotonic() + backoff
            return
        committed = await self._committed(tp)
        resume = committed
        if last is not None and (committed is None or committed <= last):
            resume = last + 1
        if resume is not None:
            self._consumer.seek(tp, resume)  # else: auto_offset_reset (no commit, nothing stored yet)
        st = PartitionState(tp.topic, tp.partition, chain, ing, next_offset=resume, committed=committed, last_stored=last)
        self._parts[tp] = st
        self._pending.pop(tp, None)
        self._consumer.resume(tp)
        log.info("kafka_partition_opened", chain_id=chain, partition=tp.partition, committed=committed,
                 last_stored_offset=last, resume_from=resume, chain_size=ing.size)

    def _load_keys(self) -> None:
        from ingest.redact import Redactor
        from ingest.signing import Signer

        layout = self.config.layout.ensure()
        for attempt in range(10):
            try:
                self._shared = {"redactor": Redactor.from_settings(self.config.redaction, layout.keys),
                                "signer": Signer.load(layout.keys, self.config.storage.signing_key_file)}
                return
            except (ValueError, OSError):
                # Replicas starting together on a fresh data dir: another process may be writing the
                # signing key this instant (created O_EXCL, then written). Read it again shortly.
                if attempt == 9:
                    raise
                time.sleep(0.2)

    def _open_chain(self, chain: str, topic: str, partition: int) -> tuple[Ingestor, int | None]:
        ing = Ingestor.open(self.config, chain, **self._shared)
        try:
            last = last_stored_offset(ing.layout, chain, topic, partition)
            if self.settings.dead_letter_topic is None:
                # Quarantined offsets count as handled too; with a dead-letter topic they are re-read
                # after a crash so the dead-letter copy is at-least-once.
                q = last_quarantined_offset(ing.layout, chain, topic, partition)
                if q is not None and (last is None or q > last):
                    last = q
        except BaseException:
            ing.close()
            raise
        return ing, last

    async def _committed(self, tp: Any) -> int | None:
        try:
            return await self._consumer.committed(tp)
        except Exception as exc:
            log.warning("kafka_committed_unknown", partition=tp.partition, error_type=type(exc).__name__)
            return None

    async def _retry_pending(self) -> None:
        assert self._lock is not None
        now = time.monotonic()
        due = [tp for tp, at in self._pending.items() if at <= now]
        if not due:
            return
        async with self._lock:
            assignment = self._consumer.assignment()
            for tp in due:
                if tp not in self._pending:
                    continue
                if tp not in assignment:
                    self._pending.pop(tp, None)
                    continue
                await self._open_partition(tp)
            self.metrics.set_assigned(len(self._parts))

    # ------------------------------------------------------------------ lag & shutdown
    def lag(self) -> list[dict[str, Any]]:
        out = []
        for tp, st in sorted(self._parts.items(), key=lambda kv: kv[1].partition):
            hw = self._consumer.highwater(tp) if self._consumer is not None else None
            lag = max(0, hw - (st.next_offset or 0)) if hw is not None else None
            out.append({"partition": st.partition, "chain_id": st.chain_id, "durable_offset": st.next_offset,
                        "committed": st.committed, "highwater": hw, "lag": lag, "stored": st.stored,
                        "duplicates": st.duplicates, "quarantined": st.quarantined})
            self.metrics.set_partition(st.topic, st.partition, st.next_offset, lag)
        return out

    def log_lag(self) -> None:
        parts = self.lag()
        total = sum(p["lag"] or 0 for p in parts)
        log.info("kafka_lag", topic=self.topic, group=self.settings.group, total_lag=total, partitions=parts,
                 waiting=sorted(tp.partition for tp in self._pending), stored=self.stats.stored,
                 duplicates=self.stats.duplicates, quarantined=self.stats.quarantined)

    async def _shutdown(self) -> None:
        consumer = self._consumer
        if self._lock is not None:
            async with self._lock:
                states = list(self._parts.values())
                if states and consumer is not None:
                    with contextlib.suppress(Exception):
                        await self._commit({_tp(st): st.next_offset for st in states
                                            if st.next_offset is not None and st.next_offset != st.committed})
                self._parts.clear()
                await self._close_states(states)
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()  # leaves the group: the others rebalance at once
        if self._dlq is not None:
            with contextlib.suppress(Exception):
                await self._dlq.stop()
        self.metrics.stop()
        log.info("kafka_collector_stopped", **self.stats.as_dict())


def _tp(st: PartitionState) -> TopicPartition:
    return TopicPartition(st.topic, st.partition)


class _Listener(ConsumerRebalanceListener):
    """Forwards rebalance callbacks (aiokafka awaits them before re-joining / fetching)."""

    def __init__(self, collector: KafkaCollector) -> None:
        self.c = collector

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        await self.c._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[Any]) -> None:
        await self.c._on_assigned(set(assigned))
