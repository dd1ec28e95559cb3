"""docker-compose.yml cannot be started here (no Docker engine), so it is checked instead:
structure (KRaft Kafka, >= 2 collector replicas in one group, detector, API, dashboard, one shared
volume, one config file), every service command is a real `tooltrail` command, and the commands
start locally with the same arguments - the collector replicas against the test broker."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.kafka.conftest import ROOT, collector_env, encoded, events, free_port, produce, stored_rows, tooltrail_cmd, verify_ok

COMPOSE = ROOT / "docker-compose.yml"
REQUIRED = {"collector": "kafka", "detector": "detect", "api": "serve", "dashboard": "dashboard"}

pytestmark = pytest.mark.timeout(180)


def _doc() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _tooltrail_services() -> dict[str, dict]:
    return {name: svc for name, svc in _doc()["services"].items()
            if isinstance(svc.get("command"), list) and svc["command"][:1] == ["tooltrail"]}


def _config_file(svc: dict) -> Path:
    for v in svc.get("volumes", []):
        src, _, dst = v.partition(":")
        if dst.split(":")[0] == svc["environment"]["TOOLTRAIL_CONFIG"]:
            return (ROOT / src).resolve()
    raise AssertionError("config file not mounted at TOOLTRAIL_CONFIG")


def _local_env(svc: dict, data_dir: Path, **extra: str) -> dict[str, str]:
    env = collector_env(data_dir)
    env["TOOLTRAIL_CONFIG"] = str(_config_file(svc))
    env.update(extra)
    return env


def test_compose_structure():
    doc = _doc()
    services = doc["services"]
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    roles = kafka["environment"]["KAFKA_PROCESS_ROLES"]
    assert set(roles.split(",")) == {"broker", "controller"}, "single-node KRaft"
    assert not any("zookeeper" in n for n in services)
    assert "healthcheck" in kafka

    tt = _tooltrail_services()
    for name, sub in REQUIRED.items():
        assert name in tt, f"service {name} missing or not a tooltrail command"
        assert tt[name]["command"][1] == sub
    assert "--follow" in tt["detector"]["command"]
    collector = tt["collector"]
    assert collector["deploy"]["replicas"] >= 2
    cmd = collector["command"]
    assert cmd[cmd.index("--bootstrap") + 1] == "kafka:9092"
    assert "--group" in cmd and "--topic" in cmd
    assert collector["depends_on"]["kafka"]["condition"] == "service_healthy"

    # one shared data volume and one config file for every tooltrail service
    mounts = set()
    for name, svc in tt.items():
        data = svc["environment"]["TOOLTRAIL_DATA_DIR"]
        vols = [v for v in svc["volumes"] if v.split(":")[1] == data]
        assert len(vols) == 1, f"{name}: data dir {data} is not on a volume"
        mounts.add(vols[0])
        assert _config_file(svc).is_file()
        assert (ROOT / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file()
    assert len(mounts) == 1, mounts
    assert next(iter(mounts)).split(":")[0] in doc["volumes"]
    # published ports only on loopback (DESIGN: secure by default)
    for svc in tt.values():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), port


def test_config_file_is_valid():
    from tooltrail.config import load_config

    svc = _tooltrail_services()["collector"]
    cfg = load_config(_config_file(svc), env={})
    assert cfg.kafka.bootstrap == "kafka:9092"
    cmd = svc["command"]
    assert cfg.kafka.topic == cmd[cmd.index("--topic") + 1]
    assert cfg.kafka.group == cmd[cmd.index("--group") + 1]


@pytest.mark.parametrize("service", sorted(REQUIRED))
def test_service_command_is_a_real_tooltrail_command(service):
    from tooltrail.cli import build_parser

    cmd = _tooltrail_services()[service]["command"]
    module = ROOT / "tooltrail" / "commands" / f"{cmd[1]}.py"
    help_run = subprocess.run(tooltrail_cmd(cmd[1], "--help"), capture_output=True, env=collector_env(ROOT / "unused"),
                              timeout=60)
    if help_run.returncode != 0 and not module.exists() and b"invalid choice" in help_run.stderr:
        pytest.skip(f"`tooltrail {cmd[1]}` is not registered yet (tooltrail/commands/{cmd[1]}.py is absent)")
    assert help_run.returncode == 0, help_run.stderr.decode()[-2000:]
    args = build_parser().parse_args(cmd[1:])  # the exact arguments of the compose file
    assert callable(args.func)


def test_collector_replicas_run_the_compose_command_against_a_broker(broker, tmp_path):
    svc = _tooltrail_services()["collector"]
    cmd = [broker.bootstrap if a == "kafka:9092" else a for a in svc["command"]]
    topic = cmd[cmd.index("--topic") + 1]
    data = tmp_path / "data"  # fresh: both replicas create/read the keys at once, as on a first `compose up`
    ports = [free_port(), free_port()]
    logs = [tmp_path / "c0.log", tmp_path / "c1.log"]
    procs = []
    for port, log in zip(ports, logs, strict=True):
        env = _local_env(svc, data, TOOLTRAIL_KAFKA__METRICS_HOST="127.0.0.1", TOOLTRAIL_KAFKA__METRICS_PORT=str(port),
                         TOOLTRAIL_KAFKA__LAG_LOG_INTERVAL_S="1")
        with open(log, "wb") as fh:
            procs.append(subprocess.Popen(tooltrail_cmd(*cmd[1:]), stdout=fh, stderr=fh, env=env))
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:  # --partitions 4 created the topic; wait for both members
            text = "".join(log.read_text(errors="replace") for log in logs)
            if text.count("kafka_partitions_assigned") >= 2:
                break
            for p, log in zip(procs, logs, strict=True):
                assert p.poll() is None, log.read_text()[-3000:]
            time.sleep(0.3)
        evs = events(500)
        produce(broker.bootstrap, topic, encoded(evs))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(stored_rows(data, "where chain_id <> 'warmup'")) < 500:
            time.sleep(0.5)
        rows = stored_rows(data, "where chain_id <> 'warmup'")
        assert sorted(r["event_id"] for r in rows) == sorted(e["event_id"] for e in evs)
        assert len({r["chain_id"] for r in rows}) == 4
        bodies = [urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode() for port in ports]
        assert all("tooltrail_kafka_consumer_lag" in b for b in bodies)
        assert sum(_assigned(b) for b in bodies) == 4, "the two replicas share the 4 partitions"
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(30)
    assert all(p.returncode == 0 for p in procs), [log.read_text()[-2000:] for log in logs]
    for log in logs:
        for line in log.read_text().splitlines():
            json.loads(line)  # structured JSON lines only
    verify_ok(data)


def _assigned(metrics: str) -> int:
    for line in metrics.splitlines():
        if line.startswith("tooltrail_kafka_assigned_partitions "):
            return int(float(line.split()[1]))
    return 0


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 45) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer: {log.read_text(errors='replace')[-3000:]}")


@pytest.mark.parametrize("service", ["detector", "api", "dashboard"])
def test_other_services_start_locally_with_the_same_arguments(service, tmp_path):
    svc = _tooltrail_services()[service]
    cmd = svc["command"]
    if subprocess.run(tooltrail_cmd(cmd[1], "--help"), capture_output=True, env=collector_env(tmp_path),
                      timeout=60).returncode != 0 and not (ROOT / "tooltrail" / "commands" / f"{cmd[1]}.py").exists():
        pytest.skip(f"`tooltrail {cmd[1]}` is not registered yet")
    data = tmp_path / "data"
    port = free_port()
    # only what cannot be the same on this machine differs: data dir, loopback bind, a free port
    env = _local_env(svc, data, TOOLTRAIL_HTTP__HOST="127.0.0.1", TOOLTRAIL_HTTP__PORT=str(port),
                     TOOLTRAIL_DASHBOARD__HOST="127.0.0.1", TOOLTRAIL_DASHBOARD__PORT=str(port))
    log = tmp_path / f"{service}.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(tooltrail_cmd(*cmd[1:]), stdout=fh, stderr=fh, env=env)
    try:
        if service == "api":
            assert _wait_http(f"http://127.0.0.1:{port}/healthz", proc, log) == 200
        elif service == "dashboard":
            assert _wait_http(f"http://127.0.0.1:{port}/", proc, log) < 500
        else:
            time.sleep(4.0)
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            pytest.fail(f"{service} ignored SIGTERM for 30s")
    assert proc.returncode in (0, -signal.SIGTERM, 128 + signal.SIGTERM, 130), log.read_text(errors="replace")[-3000:]


def test_compose_and_config_carry_no_secrets():
    import re

    for path in (COMPOSE, ROOT / "deploy" / "tooltrail.toml"):
        for line in path.read_text().splitlines():
            code = line.split("#", 1)[0]
            m = re.search(r"(password|api_keys|secret)\w*\s*[=:]\s*(\S.*)", code, re.I)
            # only references to the environment (${VAR...}) are allowed
            assert m is None or m.group(2).startswith("${"), f"{path.name}: {line}"
