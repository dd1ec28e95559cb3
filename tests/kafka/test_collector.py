"""Kafka collector against a real broker (Tansu): per-partition chains, durable-then-commit,
resume from the chain, poison messages, dead-letter topic, lag, producer helper and CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.request
from collections import Counter, defaultdict

import orjson
import pytest

from ingest.kafka import KafkaCollector, chain_id_for
from schemas.limits import MAX_EVENT_BYTES
from tests.kafka.conftest import (
    collector_env,
    committed_offsets,
    encoded,
    events,
    kafka_config,
    produce,
    quarantine_rows,
    run_collector,
    stored_rows,
    tooltrail_cmd,
    verify_ok,
)

pytestmark = pytest.mark.timeout(120)


def _offsets_by_chain(rows: list[dict]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        out[r["chain_id"]].append(int(r["origin"].rsplit(":", 1)[1]))
    return out


def test_partitions_become_chains_and_offsets_commit_after_durable(broker, topic, data_dir):
    evs = events(2000)
    acked = produce(broker.bootstrap, topic, encoded(evs))
    assert len(acked) == 4, "the principal key should spread 23 principals over the 4 partitions"
    cfg = kafka_config(data_dir, broker, topic, "g-basic")
    col = run_collector(cfg)
    assert col.stats.stored == 2000 and col.stats.duplicates == 0 and col.stats.quarantined == 0
    rows = stored_rows(data_dir)
    assert sorted(r["event_id"] for r in rows) == sorted(e["event_id"] for e in evs)
    by_chain = _offsets_by_chain(rows)
    assert set(by_chain) == {chain_id_for(topic, p) for p in acked}
    for p, offs in acked.items():
        chain = chain_id_for(topic, p)
        # exactly the acknowledged offsets, each once, in chain (seq) order
        chain_rows = sorted((r for r in rows if r["chain_id"] == chain), key=lambda r: r["seq"])
        assert [int(r["origin"].rsplit(":", 1)[1]) for r in chain_rows] == sorted(offs)
        assert all(r["origin"].startswith(f"kafka:{topic}:{p}:") for r in chain_rows)
    # keyed by principal: one principal never spans two chains
    chains_of = defaultdict(set)
    for r in rows:
        chains_of[r["principal"]].add(r["chain_id"])
    assert all(len(c) == 1 for c in chains_of.values())
    verify_ok(data_dir)

    # the group's committed offsets are the ends of the partitions (committed after durable)
    assert committed_offsets(broker, topic, "g-basic") == {p: max(offs) + 1 for p, offs in acked.items()} | {
        p: None for p in range(4) if p not in acked}


class _NoCommitCollector(KafkaCollector):
    """Crash between fsync and commit, every time: events durable, offsets never committed."""

    async def _commit(self, offsets):
        return False


def test_restart_resumes_from_the_chain_not_the_stale_commit(broker, topic, data_dir):
    # events without event_id get a content-derived id; identical content twice would be one event,
    # so the offsets recorded in the chain are what prevents re-reading (not event-id dedupe).
    first = events(1500, event_id=None)
    produce(broker.bootstrap, topic, encoded(first))
    cfg = kafka_config(data_dir, broker, topic, "g-resume")
    col = _NoCommitCollector(cfg)
    asyncio.run(asyncio.wait_for(col.run(until_idle_s=1.5), 60))
    assert col.stats.stored == 1500

    assert set(committed_offsets(broker, topic, "g-resume").values()) == {None}
    second = events(700, start=1500, event_id=None)
    produce(broker.bootstrap, topic, encoded(second))
    col2 = run_collector(kafka_config(data_dir, broker, topic, "g-resume-2"))  # no commits at all: the chain decides
    assert col2.stats.duplicates == 0, "stored messages were read again: resume must start after the chain's last offset"
    assert col2.stats.stored == 700
    rows = stored_rows(data_dir)
    assert len(rows) == 2200 and len({r["event_id"] for r in rows}) == 2200
    for chain, offs in _offsets_by_chain(rows).items():
        assert sorted(offs) == list(range(len(offs))), f"{chain}: offsets not exactly once"
    verify_ok(data_dir)


def test_duplicate_event_ids_are_stored_once(broker, topic, data_dir):
    evs = events(300)
    produce(broker.bootstrap, topic, encoded(evs + evs[:50]))  # a gateway re-sent 50 events
    col = run_collector(kafka_config(data_dir, broker, topic, "g-dup"))
    assert col.stats.stored == 300 and col.stats.duplicates == 50
    assert len(stored_rows(data_dir)) == 300


def _poison_batch() -> tuple[list[bytes | None], list[bytes | None], dict[str, str]]:
    """Valid events interleaved with every kind of poison. Returns values, keys, {marker: expected reason}."""
    good = encoded(events(400))
    big = orjson.dumps({**events(1, start=9000)[0], "reason": "x" * 8000, "args": {"blob": "y" * (MAX_EVENT_BYTES + 10)}})
    poison: list[tuple[bytes | None, str]] = [
        (b"this is not json {", "invalid JSON"),
        (b'{"tool": "x", "principal": "p-poison"}', "Field required"),
        (orjson.dumps({**events(1, start=9001)[0], "decision": "maybe"}), "decision"),
        (b"[1, 2, 3]", "JSON object"),
        (big, f"larger than {MAX_EVENT_BYTES}"),
        (None, "null value"),
    ]
    values: list[bytes | None] = []
    keys: list[bytes | None] = []
    expected: dict[str, str] = {}
    for i, v in enumerate(good):
        values.append(v)
        keys.append(f"user_{i % 5}".encode())
        if i % 70 == 0 and poison:
            pv, reason = poison.pop()
            for k in range(4):  # the same poison on every partition: none of them may block
                values.append(pv)
                keys.append(f"user_{k}".encode())
            expected[reason] = reason
    assert not poison
    return values, keys, expected


def test_poison_messages_are_quarantined_and_never_block(broker, topic, data_dir):
    values, keys, expected = _poison_batch()
    acked = produce(broker.bootstrap, topic, values, keys=keys)
    n_poison = len(values) - 400
    cfg = kafka_config(data_dir, broker, topic, "g-poison")
    col = run_collector(cfg)
    assert col.stats.stored == 400
    assert col.stats.quarantined == n_poison == 24
    q = quarantine_rows(data_dir)
    assert len(q) == n_poison
    for row in q:
        t, p, off = row["origin"].split(":")[1:]
        assert t == topic and int(off) in acked[int(p)]
        assert row["source"] == f"kafka:{topic}"
    reasons = " | ".join(json.dumps(r["reasons"]) for r in q)
    for reason in expected:
        assert reason in reasons, reason
    # consumption went on past every poison message, on every partition
    rows = stored_rows(data_dir)
    assert len(rows) == 400
    for p, offs in acked.items():
        chain = chain_id_for(topic, p)
        stored_offs = {int(r["origin"].rsplit(":", 1)[1]) for r in rows if r["chain_id"] == chain}
        quarantined = {int(r["origin"].rsplit(":", 1)[1]) for r in q if r["origin"].startswith(f"kafka:{topic}:{p}:")}
        assert stored_offs | quarantined == set(offs) and not stored_offs & quarantined
    verify_ok(data_dir)
    # a new group (no committed offsets) resumes from the chain: quarantined offsets count as
    # handled, nothing is stored or quarantined twice
    col2 = run_collector(kafka_config(data_dir, broker, topic, "g-poison-2"))
    assert col2.stats.handled == 0
    assert len(quarantine_rows(data_dir)) == n_poison


def test_dead_letter_topic_gets_original_bytes_and_reason(broker, topic, data_dir):
    from aiokafka import AIOKafkaConsumer, TopicPartition

    dlq = topic + "-dlq"
    broker.create_topic(dlq, 1)
    values = [b"not json", encoded(events(1))[0], b'{"principal": "u"}', None]
    produce(broker.bootstrap, topic, values, keys=[b"user_0"] * 4)
    col = run_collector(kafka_config(data_dir, broker, topic, "g-dlq", dead_letter_topic=dlq))
    assert col.stats.stored == 1 and col.stats.quarantined == 3 and col.stats.dead_lettered == 3

    async def read_dlq():
        c = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
        await c.start()
        try:
            c.assign([TopicPartition(dlq, 0)])
            got = []
            while len(got) < 3:
                batch = await c.getmany(timeout_ms=5000)
                assert batch, "dead-letter messages missing"
                for msgs in batch.values():
                    got.extend(msgs)
            return got
        finally:
            await c.stop()

    got = asyncio.run(read_dlq())
    assert [m.value for m in got] == [b"not json", b'{"principal": "u"}', None]
    for m in got:
        h = dict(m.headers)
        assert h["tooltrail-origin"].decode().startswith(f"kafka:{topic}:")
        assert h["tooltrail-reason"] and h["tooltrail-source"] == f"kafka:{topic}".encode()
        assert m.key == b"user_0"


def test_lag_metrics_and_log_lines(broker, topic, data_dir):
    produce(broker.bootstrap, topic, encoded(events(3000)))
    cfg = kafka_config(data_dir, broker, topic, "g-metrics", metrics_port=0, max_batch=500)
    col = KafkaCollector(cfg)
    scraped: list[str] = []

    async def scrape():
        while col.stats.stored < 3000:
            await asyncio.sleep(0.05)
        col.log_lag()
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(f"http://127.0.0.1:{col.metrics_port}/metrics",
                                                                      timeout=5).read().decode())
        scraped.append(body)
        lag = col.lag()
        assert {p["partition"] for p in lag} == {0, 1, 2, 3}
        assert all(p["lag"] == 0 and p["durable_offset"] == p["highwater"] == p["committed"] for p in lag)
        col.request_stop()

    async def main():
        await asyncio.wait_for(asyncio.gather(col.run(), scrape()), 60)

    asyncio.run(main())
    body = scraped[0]
    assert 'tooltrail_kafka_consumer_lag{partition="0",topic="' in body
    assert 'tooltrail_kafka_events_total{outcome="stored"} 3000.0' in body
    assert "tooltrail_kafka_assigned_partitions 4.0" in body


def test_emit_and_kafka_commands(broker, topic, data_dir, tmp_path):
    src = tmp_path / "events.jsonl"
    evs = events(1000)
    for e in evs[:100]:
        e.pop("event_id")  # `emit` fills in a random event_id
    lines = [orjson.dumps(e) for e in evs] + [b'{"tool": "missing fields"}']
    src.write_bytes(b"\n".join(lines) + b"\n")
    env = collector_env(data_dir)
    out = subprocess.run(tooltrail_cmd("emit", str(src), "--bootstrap", broker.bootstrap, "--topic", topic),
                         capture_output=True, env=env, timeout=60)
    assert out.returncode == 3, out.stderr.decode()[-2000:]
    assert json.loads(out.stdout) == {"sent": 1000, "invalid": 1, "topic": topic}
    assert b"events.jsonl:1001: principal: Field required" in out.stderr

    out = subprocess.run(tooltrail_cmd("kafka", "--bootstrap", broker.bootstrap, "--topic", topic, "--group", "g-cli",
                                       "--until-idle", "1.5", "--lag-interval", "0.5"),
                         capture_output=True, env=env, timeout=90)
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    assert json.loads(out.stdout)["stored"] == 1000
    logs = [json.loads(line) for line in out.stderr.decode().splitlines()]  # every stderr line is JSON
    lag_lines = [entry for entry in logs if entry["event"] == "kafka_lag"]
    assert lag_lines and all("partitions" in entry and "total_lag" in entry for entry in lag_lines)
    assert lag_lines[-1]["total_lag"] == 0
    rows = stored_rows(data_dir)
    assert len(rows) == 1000 and sum(1 for r in rows if r["event_id"].startswith("ev-") and len(r["event_id"]) == 35) == 100
    verify_ok(data_dir)


def test_no_credentials_in_logs_with_sasl(broker, tmp_path):
    """SASL settings reach aiokafka (a real SCRAM exchange against a broker that requires auth
    fails) and the password appears nowhere in the output."""
    from tests.kafka.conftest import _wait_port, free_port

    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen([broker.binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                             "--storage-engine", "memory://tansu/", "--authentication"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port, proc)
        canary = "pw-CANARY-7f3a9c"
        env = collector_env(tmp_path / "data", sasl_password=canary)
        out = subprocess.run(tooltrail_cmd("--log-level", "debug", "kafka", "--bootstrap", f"127.0.0.1:{port}", "--topic", "t",
                                           "--group", "g", "--security-protocol", "SASL_PLAINTEXT",
                                           "--sasl-mechanism", "SCRAM-SHA-256", "--sasl-username", "alice",
                                           "--until-idle", "1"),
                             capture_output=True, env=env, timeout=60)
    finally:
        proc.terminate()
        proc.wait(10)
    text = (out.stdout + out.stderr).decode()
    assert out.returncode != 0
    assert canary not in text
    assert '"sasl_mechanism": "SCRAM-SHA-256"' in text and '"sasl_password_set": true' in text


def test_chain_busy_partition_waits_then_proceeds(broker, topic, data_dir):
    """A partition whose chain is still owned (a zombie member) is paused, not skipped."""
    from ingest.pipeline import Ingestor

    produce(broker.bootstrap, topic, encoded(events(800)))
    cfg = kafka_config(data_dir, broker, topic, "g-busy")
    zombie = Ingestor.open(cfg, chain_id_for(topic, 0))
    col = KafkaCollector(cfg)

    async def main():
        async def release():
            while not any(tp.partition == 0 for tp in col._pending):
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)
            assert col.stats.stored < 800
            await asyncio.to_thread(zombie.close)

        await asyncio.wait_for(asyncio.gather(col.run(until_idle_s=1.5), release()), 60)

    asyncio.run(main())
    assert col.stats.stored == 800
    assert Counter(r["chain_id"] for r in stored_rows(data_dir))[chain_id_for(topic, 0)] > 0
    verify_ok(data_dir)


class _FlakyCollector(KafkaCollector):
    """The write path fails twice (as a full disk would: WalError), and chokes on one message."""

    fails = 2

    def _load_keys(self) -> None:
        super()._load_keys()
        red = self._shared["redactor"]
        real = red.redact_many

        def redact_many(batch, *a, **kw):
            if any(fields.get("args", {}).get("note") == "BOOM" for fields in batch):
                raise RuntimeError("redactor bug")
            return real(batch, *a, **kw)

        red.redact_many = redact_many

    def _store(self, st, msgs):
        from ingest.wal import WalError

        if self.fails:
            self.fails -= 1
            raise WalError("simulated: no space left on device")
        return super()._store(st, msgs)


def test_write_failures_are_retried_and_a_crashing_message_is_isolated(broker, topic, data_dir):
    evs = events(600)
    evs[123]["args"] = {"note": "BOOM"}
    produce(broker.bootstrap, topic, encoded(evs))
    col = _FlakyCollector(kafka_config(data_dir, broker, topic, "g-flaky"))
    asyncio.run(asyncio.wait_for(col.run(until_idle_s=2.5), 90))
    assert col.stats.write_failures == 2
    assert col.stats.stored == 599 and col.stats.quarantined == 1 and col.stats.duplicates == 0
    q = quarantine_rows(data_dir)
    assert len(q) == 1 and "RuntimeError" in json.dumps(q[0]["reasons"]) and "BOOM" in q[0]["raw"]
    rows = stored_rows(data_dir)
    assert len(rows) == 599 and evs[123]["event_id"] not in {r["event_id"] for r in rows}
    verify_ok(data_dir)
