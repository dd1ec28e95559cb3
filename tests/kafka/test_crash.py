"""The issue's done-when: 100,000 events over 4 partitions, two `tooltrail kafka` processes in one
consumer group, SIGKILL a collector several times during the run and restart it; afterwards the
stored set equals the produced set, with zero duplicates, every offset exactly once, and
`verify` passes for every chain."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from ingest.kafka import chain_id_for
from ingest.layout import Layout
from tests.kafka.conftest import collector_env, encoded, events, stored_rows, tooltrail_cmd, verify_ok

N = 100_000
BURSTS = 5
BURST_PERIOD_S = 6.0


def _produce_in_bursts(bootstrap: str, topic: str, values: list[bytes], started: list[threading.Event],
                       acked: dict[int, list[int]], errors: list[BaseException]) -> None:
    from ingest.kafka import EventProducer
    from ingest.settings import KafkaSettings

    async def main() -> None:
        settings = KafkaSettings(bootstrap=bootstrap, topic=topic, producer_idempotence=False)
        per = len(values) // BURSTS
        t0 = time.monotonic()
        async with EventProducer(settings, add_event_id=False) as p:
            for b in range(BURSTS):
                await asyncio.sleep(max(0.0, t0 + b * BURST_PERIOD_S - time.monotonic()))
                started[b].set()
                chunk = values[b * per:(b + 1) * per] if b < BURSTS - 1 else values[b * per:]
                futs = [await p.send(v) for v in chunk]
                for md in await asyncio.gather(*futs):
                    acked[md.partition].append(md.offset)

    try:
        asyncio.run(main())
    except BaseException as exc:  # surfaced by the test
        errors.append(exc)
        for ev in started:
            ev.set()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_collectors_sigkilled_repeatedly_store_every_event_exactly_once(broker, topic, data_dir, tmp_path):
    # Keys exist before two processes start at once (first-run key creation is not what this tests).
    from ingest.pipeline import Ingestor
    from tooltrail.config import load_config

    Ingestor.open(load_config(data_dir=str(data_dir), env={}), "warmup").close()

    evs = events(N)
    values = encoded(evs)
    env = collector_env(data_dir, max_batch=2000, lag_log_interval_s=2)
    cmd = tooltrail_cmd("kafka", "--bootstrap", broker.bootstrap, "--topic", topic, "--group", "g-crash")
    logs = [tmp_path / "collector-0.log", tmp_path / "collector-1.log"]

    log_pos = [0, 0]  # where the current incarnation's log starts

    def start(i: int) -> subprocess.Popen:
        log_pos[i] = logs[i].stat().st_size if logs[i].exists() else 0
        with open(logs[i], "ab") as fh:
            return subprocess.Popen(cmd, stdout=fh, stderr=fh, env=env)

    def owned_partitions(i: int) -> list[int]:
        with open(logs[i], "rb") as fh:
            fh.seek(log_pos[i])
            owned: list[int] = []
            for line in fh.read().splitlines():
                if b"kafka_partitions_assigned" in line:
                    owned = json.loads(line)["partitions"]
                elif b"kafka_partitions_revoked" in line:
                    owned = []
            return owned

    wal_dir = Layout.at(data_dir).wal_dir

    def holding_unsealed_rows(i: int) -> bool:
        """A chain of collector i has appended rows to its write-ahead log that are not sealed
        into a segment yet (the log file is rotated to an empty one at every seal)."""
        return any(f.stat().st_size > 0 for part in owned_partitions(i)
                   for f in (wal_dir / chain_id_for(topic, part)).glob("*.wal"))

    def pick_victim(b: int) -> int:
        # Kill a process that is writing: wait (bounded) until one holds unsealed rows, so the
        # kill lands on live state however fast this machine consumes a burst.
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            busy = [i for i in (0, 1) if holding_unsealed_rows(i)]
            if busy:
                return busy[b % len(busy)]
            time.sleep(0.005)
        owners = [i for i in (0, 1) if owned_partitions(i)]
        return owners[b % len(owners)] if owners else b % 2

    procs = [start(0), start(1)]
    acked: dict[int, list[int]] = defaultdict(list)
    errors: list[BaseException] = []
    started = [threading.Event() for _ in range(BURSTS)]
    producer = threading.Thread(target=_produce_in_bursts, args=(broker.bootstrap, topic, values, started, acked, errors))
    rng = random.Random(20261122)
    kills = 0
    t_start = time.monotonic()
    try:
        time.sleep(3.0)  # both members join the group before the first burst
        producer.start()
        for b in range(BURSTS):
            assert started[b].wait(60), "producer stalled"
            time.sleep(rng.uniform(0.0, 0.3))  # while that burst is being consumed
            victim = pick_victim(b)
            procs[victim].send_signal(signal.SIGKILL)
            procs[victim].wait(10)
            kills += 1
            procs[victim] = start(victim)
        producer.join(120)
        assert not producer.is_alive() and not errors, errors
        assert sum(len(v) for v in acked.values()) == N and len(acked) == 4

        deadline = time.monotonic() + 150
        stored = 0
        while time.monotonic() < deadline:
            for i, p in enumerate(procs):
                assert p.poll() is None, f"collector {i} exited: {logs[i].read_text()[-3000:]}"
            stored = len(stored_rows(data_dir))
            if stored >= N:
                break
            time.sleep(1.0)
        assert stored >= N, f"only {stored} of {N} stored in time"
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
    assert kills == BURSTS
    assert all(p.returncode == 0 for p in procs), [_tail(f) for f in logs]

    rows = stored_rows(data_dir, "where chain_id <> 'warmup'")
    ids = [r["event_id"] for r in rows]
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} duplicates"
    assert set(ids) == {e["event_id"] for e in evs}
    by_chain: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        by_chain[r["chain_id"]].append(int(r["origin"].rsplit(":", 1)[1]))
    for p, offs in acked.items():
        assert sorted(by_chain[chain_id_for(topic, p)]) == sorted(offs), f"partition {p}: offsets not exactly once"
    verify_ok(data_dir)
    assert time.monotonic() - t_start < 180

    # The kills landed on live state: restarts replayed write-ahead logs (unsealed events) and
    # partitions were reopened after a crash with stored events beyond the committed offset.
    entries = [json.loads(line) for f in logs for line in f.read_text(errors="replace").splitlines() if line.startswith("{")]
    replayed = sum(e.get("events", 0) for e in entries if e.get("event") == "wal_replayed")
    ahead = [e for e in entries if e.get("event") == "kafka_partition_opened" and e.get("last_stored_offset") is not None
             and (e.get("committed") is None or e["committed"] <= e["last_stored_offset"])]
    print(f"kills={kills} wal_replayed_events={replayed} reopened_ahead_of_commit={len(ahead)} "
          f"seconds={time.monotonic() - t_start:.1f}")
    assert replayed > 0


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-2000:]
