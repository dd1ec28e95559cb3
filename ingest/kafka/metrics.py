"""Optional Prometheus metrics of the Kafka collector (its own registry, its own port)."""

from __future__ import annotations

import contextlib
from typing import Any


class CollectorMetrics:
    """No-op unless `start(port)` is called; the collector updates it either way."""

    def __init__(self) -> None:
        self._on = False
        self._server: Any = None

    def start(self, host: str, port: int) -> int:
        from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

        reg = CollectorRegistry()
        self.lag = Gauge("tooltrail_kafka_consumer_lag", "Messages between the durable position and the high watermark",
                         ["topic", "partition"], registry=reg)
        self.position = Gauge("tooltrail_kafka_durable_offset", "Next offset to store (everything before it is durable)",
                              ["topic", "partition"], registry=reg)
        self.events = Counter("tooltrail_kafka_events", "Messages handled by outcome", ["outcome"], registry=reg)
        self.assigned = Gauge("tooltrail_kafka_assigned_partitions", "Partitions owned by this collector", registry=reg)
        self.rebalances = Counter("tooltrail_kafka_rebalances", "Partition revocations seen", registry=reg)
        self.batch_seconds = Gauge("tooltrail_kafka_last_batch_seconds", "Duration of the last consume-to-durable batch",
                                   registry=reg)
        self._server, _thread = start_http_server(port, addr=host, registry=reg)
        self._on = True
        return int(self._server.server_port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def set_partition(self, topic: str, partition: int, durable: int | None, lag: int | None) -> None:
        if not self._on:
            return
        if durable is not None:
            self.position.labels(topic, str(partition)).set(durable)
        if lag is not None:
            self.lag.labels(topic, str(partition)).set(lag)

    def drop_partition(self, topic: str, partition: int) -> None:
        if not self._on:
            return
        for g in (self.lag, self.position):
            with contextlib.suppress(KeyError):
                g.remove(topic, str(partition))

    def count(self, outcome: str, n: int) -> None:
        if self._on and n:
            self.events.labels(outcome).inc(n)

    def set_assigned(self, n: int) -> None:
        if self._on:
            self.assigned.set(n)

    def rebalanced(self) -> None:
        if self._on:
            self.rebalances.inc()

    def batch_took(self, seconds: float) -> None:
        if self._on:
            self.batch_seconds.set(seconds)
