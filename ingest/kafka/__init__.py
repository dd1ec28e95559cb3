"""Kafka collector and producer helper (scale-out path; see docs/readme/kafka.md).

- `KafkaCollector`: consumer-group member; one hash chain per topic-partition
  (`kafka-<topic>-p<N>`), offsets committed only after the events are durable.
- `EventProducer` / `emit_events`: produce tool-call events keyed by principal.
"""

from __future__ import annotations

from ingest.kafka.admin import ensure_topic
from ingest.kafka.collector import CollectorFatal, CollectorStats, KafkaCollector
from ingest.kafka.naming import chain_id_for, origin_for, parse_origin
from ingest.kafka.producer import EventProducer, emit_events, encode_event, partition_key
from ingest.kafka.security import KafkaConfigError, client_kwargs, describe

__all__ = [
    "CollectorFatal", "CollectorStats", "EventProducer", "KafkaCollector", "KafkaConfigError", "chain_id_for",
    "client_kwargs", "describe", "emit_events", "encode_event", "ensure_topic", "origin_for", "parse_origin",
    "partition_key",
]
