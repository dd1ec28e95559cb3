"""Producer helper for gateways written in Python: one tool-call event per Kafka message,
keyed by principal.

    async with EventProducer(config.kafka) as p:          # or EventProducer(bootstrap=..., topic=...)
        await p.send(event_dict)                           # enqueue (batched, non-blocking)
        await p.flush()                                    # wait until the broker acked everything

    emit_events(events, settings)                          # blocking convenience wrapper

The key is the event's ``principal``: Kafka's default partitioner hashes it, so all events of
one principal - and therefore all of its sessions - land on one partition, one collector and
one hash chain, where the sequence and volume detectors see them in order. Messages are
produced with ``acks=all`` and idempotence, so a broker-side retry never duplicates. Events
without an ``event_id`` get a random one here, so a collector replay (or a producer retry of
the same bytes) is recognised as a duplicate; set your own ``event_id`` if your application
may re-send an event itself.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from typing import Any

import orjson

from ingest.kafka.security import client_kwargs
from ingest.settings import KafkaSettings

Event = dict[str, Any] | bytes | bytearray | str


def partition_key(event: dict[str, Any]) -> bytes | None:
    """The message key of an event: its principal (None when absent: round-robin)."""
    principal = event.get("principal")
    return None if principal is None else str(principal).encode()


def new_event_id() -> str:
    return "ev-" + uuid.uuid4().hex


def encode_event(event: Event, *, add_event_id: bool = True) -> tuple[bytes, bytes | None]:
    """(value, key) of one event. Bytes/str that are not a JSON object are sent unchanged
    (the collector quarantines them) with no key."""
    if isinstance(event, dict):
        obj: Any = event
        raw: bytes | None = None
    else:
        raw = event.encode() if isinstance(event, str) else bytes(event)
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw, None
        if not isinstance(obj, dict):
            return raw, None
    if add_event_id and obj.get("event_id") is None:
        obj = {**obj, "event_id": new_event_id()}
        raw = None
    value = raw if raw is not None else orjson.dumps(obj)
    return value, partition_key(obj)


class EventProducer:
    def __init__(self, settings: KafkaSettings | None = None, *, bootstrap: str | None = None, topic: str | None = None,
                 add_event_id: bool = True, **producer_kw: Any) -> None:
        base = settings or KafkaSettings()
        update = {k: v for k, v in (("bootstrap", bootstrap), ("topic", topic)) if v is not None}
        self.settings = base.model_copy(update=update) if update else base
        self.topic = self.settings.topic
        self.add_event_id = add_event_id
        opts: dict[str, Any] = {"acks": "all", "enable_idempotence": self.settings.producer_idempotence, "linger_ms": 5,
                                "max_batch_size": 1 << 20, "request_timeout_ms": 30_000}
        opts.update(producer_kw)
        self._opts = opts
        self._producer: Any = None
        self._pending: list[asyncio.Future[Any]] = []
        self.sent = 0

    async def start(self) -> EventProducer:
        from aiokafka import AIOKafkaProducer

        kw = client_kwargs(self.settings)
        kw["client_id"] = "tooltrail-producer"
        self._producer = AIOKafkaProducer(**kw, **self._opts)
        await self._producer.start()
        return self

    async def stop(self, *, discard: bool = False) -> None:
        """Flush (unless `discard`) and close."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            if discard:
                self._pending.clear()
            else:
                await self._drain()
        finally:
            await producer.stop()

    async def __aenter__(self) -> EventProducer:
        return await self.start()

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        await self.stop(discard=exc_type is not None)

    async def send(self, event: Event, *, key: bytes | None = None) -> asyncio.Future[Any]:
        """Enqueue one event; returns the delivery future (RecordMetadata). `flush()` awaits them all."""
        if self._producer is None:
            raise RuntimeError("producer not started")
        value, default_key = encode_event(event, add_event_id=self.add_event_id)
        fut = await self._producer.send(self.topic, value=value, key=key if key is not None else default_key)
        self._pending.append(fut)
        if len(self._pending) >= 50_000:
            await self._drain()
        return fut

    async def send_many(self, events: Iterable[Event]) -> int:
        n = 0
        for ev in events:
            await self.send(ev)
            n += 1
        await self.flush()
        return n

    async def flush(self) -> None:
        """Wait until every event sent so far is acknowledged (raises the first delivery error)."""
        await self._drain()

    async def _drain(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        try:
            await asyncio.gather(*pending)
        except Exception as exc:
            if self._opts.get("enable_idempotence") and type(exc).__name__ == "UnknownError":
                raise RuntimeError("the broker refused idempotent producing (InitProducerId); set "
                                   "kafka.producer_idempotence = false (duplicates are still dropped by event_id "
                                   "in the collector)") from exc
            raise
        self.sent += len(pending)


def emit_events(events: Iterable[Event], settings: KafkaSettings | None = None, *, bootstrap: str | None = None,
                topic: str | None = None, add_event_id: bool = True) -> int:
    """Blocking: produce every event and wait for the broker's acks. Returns how many were sent."""

    async def _run() -> int:
        async with EventProducer(settings, bootstrap=bootstrap, topic=topic, add_event_id=add_event_id) as p:
            return await p.send_many(events)

    return asyncio.run(_run())
