"""Topic administration for the collector's `--partitions` convenience flag."""

from __future__ import annotations

from ingest.kafka.security import client_kwargs
from ingest.settings import KafkaSettings


async def ensure_topic(settings: KafkaSettings, partitions: int, *, topic: str | None = None,
                       replication_factor: int = 1) -> bool:
    """Create the topic with `partitions` partitions unless it exists. Returns True if created."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    kw = client_kwargs(settings)
    kw["client_id"] = "tooltrail-admin"
    admin = AIOKafkaAdminClient(**kw)
    await admin.start()
    try:
        name = topic or settings.topic
        if name in await admin.list_topics():
            return False
        try:
            resp = await admin.create_topics([NewTopic(name, partitions, replication_factor)])
        except TopicAlreadyExistsError:
            return False
        for t in getattr(resp, "topic_errors", ()) or ():
            code = t[1]
            if code == TopicAlreadyExistsError.errno:
                return False
            if code:
                raise RuntimeError(f"cannot create topic {name!r}: error code {code} {t[2] if len(t) > 2 else ''}")
        return True
    finally:
        await admin.close()
