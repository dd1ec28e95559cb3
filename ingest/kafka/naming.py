"""Names that tie stored events to Kafka: chain ids per topic-partition and `origin` strings.

Every stored event (and every quarantined message) carries ``origin = "kafka:<topic>:<partition>:<offset>"``
inside its hashed record, so the offset range a chain covers is part of the tamper-evident log
and a restarted collector can find where it stopped without trusting the broker's committed offset.
"""

from __future__ import annotations

import hashlib
import re

from ingest.layout import check_chain_id

ORIGIN_PREFIX = "kafka:"
_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def chain_id_for(topic: str, partition: int, prefix: str = "kafka") -> str:
    """``<prefix>-<topic>-p<partition>``; topics too long for a chain id keep a readable head plus a hash."""
    if not _TOPIC_RE.match(topic):
        raise ValueError(f"invalid Kafka topic name {topic!r}")
    if partition < 0:
        raise ValueError("partition must be >= 0")
    tail = f"-p{partition}"
    name = f"{prefix}-{topic}{tail}"
    if len(name) > 128:
        digest = hashlib.sha256(topic.encode()).hexdigest()[:12]
        keep = 128 - len(prefix) - 1 - 1 - len(digest) - len(tail)
        name = f"{prefix}-{topic[:keep]}-{digest}{tail}"
    return check_chain_id(name)


def origin_for(topic: str, partition: int, offset: int) -> str:
    return f"{ORIGIN_PREFIX}{topic}:{partition}:{offset}"


def origin_prefix(topic: str, partition: int) -> str:
    """Every origin of one topic-partition starts with this string."""
    return f"{ORIGIN_PREFIX}{topic}:{partition}:"


def parse_origin(origin: object) -> tuple[str, int, int] | None:
    """(topic, partition, offset) of a Kafka origin, or None for anything else."""
    if not isinstance(origin, str) or not origin.startswith(ORIGIN_PREFIX):
        return None
    parts = origin[len(ORIGIN_PREFIX):].rsplit(":", 2)
    if len(parts) != 3:
        return None
    topic, partition, offset = parts
    try:
        return topic, int(partition), int(offset)
    except ValueError:
        return None
