"""`tooltrail keys` and `tooltrail serve` as real processes: keys are stored hashed (0600),
serve binds loopback, shuts down gracefully on SIGTERM (seal + checkpoint + unlock), and
`--workers 2` runs two processes that each own a chain."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time

import httpx

from tests.conftest import ROOT, cli_env, make_event
from tests.http.conftest import free_port, wait_sealed


def tt(data_dir, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tooltrail.cli", *args], cwd=ROOT, env={**cli_env(data_dir), **(env or {})},
                          capture_output=True, text=True, timeout=60)


def test_keys_create_list_revoke(data_dir):
    r = tt(data_dir, "keys", "create", "gateway-1")
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert token.startswith("tti_") and len(token) > 40
    r = tt(data_dir, "keys", "create", "dash", "--read", "--json")
    info = json.loads(r.stdout)
    assert info["kind"] == "read" and info["token"].startswith("ttr_")
    path = data_dir / "keys" / "api_keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = path.read_text()
    assert token not in stored and info["token"] not in stored
    import hashlib

    assert hashlib.sha256(token.encode()).hexdigest() in stored
    listing = tt(data_dir, "keys", "list").stdout
    assert "gateway-1" in listing and "dash" in listing and token not in listing
    assert tt(data_dir, "keys", "create", "bad name!").returncode == 2
    assert tt(data_dir, "keys", "revoke", "gateway-1").returncode == 0
    assert "gateway-1" not in tt(data_dir, "keys", "list").stdout
    assert tt(data_dir, "keys", "revoke", "gateway-1").returncode == 2


def test_serve_ingests_with_a_minted_key_and_stops_gracefully(data_dir, spawn_serve):
    token = tt(data_dir, "keys", "create", "gw-cli").stdout.strip()
    srv = spawn_serve(free_port())
    r = httpx.post(srv.url + "/v1/events", json=[make_event(i) for i in range(25)],
                   headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 200 and r.json()["stored"] == 25
    # A second collector on the same chain is refused (one writer per chain).
    other = tt(data_dir, "serve", "--port", str(free_port()))
    assert other.returncode == 2 and "owned by another process" in other.stderr
    srv.kill(signal.SIGTERM)
    assert srv.proc.returncode in (0, -signal.SIGTERM)
    log = srv.log.read_text()
    assert '"collector_stopped"' in log and token not in log
    assert all(line.startswith("{") for line in log.splitlines() if line.strip()), "non-JSON log line"
    assert not any((data_dir / "wal" / "http").glob("*.wal")), "graceful stop leaves no WAL behind"
    rows = wait_sealed(data_dir, 25, timeout=5)
    assert len(rows) == 25 and {x["source"] for x in rows} == {"gw-cli"}
    v = tt(data_dir, "verify")
    assert v.returncode == 0, v.stdout + v.stderr


def test_serve_workers_each_own_a_chain(data_dir, spawn_serve):
    srv = spawn_serve(free_port(), "--workers", "2")
    try:
        chains = set()
        deadline = time.time() + 30
        i = 0
        while len(chains) < 2 and time.time() < deadline:
            r = httpx.post(srv.url + "/v1/events", json=[make_event(i * 10 + j) for j in range(10)],
                           headers={"Authorization": "Bearer test-ingest-token-0123456789abcdef", "Connection": "close"},
                           timeout=30)
            assert r.status_code == 200, r.text
            chains.add(r.json()["chain_id"])
            i += 1
        assert chains == {"http-0", "http-1"}
    finally:
        srv.kill(signal.SIGTERM)
    assert os.path.exists(data_dir / "lake" / "manifests" / "http-0.jsonl")
    assert len(wait_sealed(data_dir, i * 10, timeout=10)) == i * 10
    assert tt(data_dir, "verify").returncode == 0
