"""Prometheus metrics of one collector process (its own registry, so several apps can live
in one process, e.g. in tests)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.025, 0.035, 0.05, 0.075, 0.1,
                   0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _StoreCollector(Collector):
    def __init__(self, sample: Callable[[], dict[str, Any]]) -> None:
        self._sample = sample

    def collect(self) -> Iterator[GaugeMetricFamily]:
        s = self._sample()
        chain = s.get("chain_id") or ""
        specs = (
            ("tooltrail_wal_pending_events", "Events handed to the write path and not yet acknowledged as durable "
             "(WAL lag).", "pending_events"),
            ("tooltrail_wal_pending_requests", "Ingest requests queued or running on the write path.", "pending_requests"),
            ("tooltrail_wal_unsealed_events", "Durable events in the write-ahead log not yet sealed into a segment.",
             "unsealed"),
            ("tooltrail_wal_healthy", "1 when the write-ahead log accepts writes, 0 after a write/fsync failure.",
             "healthy"),
            ("tooltrail_chain_events", "Events in this collector's hash chain.", "chain_size"),
            ("tooltrail_segments", "Live Parquet segments of this collector's chain.", "segments"),
        )
        for name, doc, key in specs:
            value = s.get(key)
            if value is None:
                continue
            g = GaugeMetricFamily(name, doc, labels=["chain_id"])
            g.add_metric([chain], float(value))
            yield g


class Metrics:
    def __init__(self, sample: Callable[[], dict[str, Any]]) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.events = Counter("tooltrail_http_events", "Events received over HTTP by source and outcome "
                              "(stored, duplicate, rejected).", ["source", "outcome"], registry=r)
        self.requests = Counter("tooltrail_http_requests", "HTTP requests by route and status code.",
                                ["route", "status"], registry=r)
        self.refused = Counter("tooltrail_http_refused", "Ingest requests refused before storage, by reason "
                               "(rate_limited, backpressure, storage_unavailable, ...).", ["reason"], registry=r)
        self.batch_seconds = Histogram("tooltrail_http_batch_seconds", "POST /v1/events: time from request start to "
                                       "durable acknowledgement (2xx responses).", buckets=LATENCY_BUCKETS, registry=r)
        self.batch_events = Histogram("tooltrail_http_batch_events", "Events per acknowledged ingest request.",
                                      buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 50000), registry=r)
        r.register(_StoreCollector(sample))

    def render(self) -> bytes:
        return generate_latest(self.registry)
