"""Every event acknowledged with a 2xx survives SIGKILL of the server, exactly once, with an
intact chain: a separate client process sends concurrent batches while `tooltrail serve` is
killed with SIGKILL several times and restarted."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

from tests.conftest import ROOT, cli_env
from tests.http.conftest import INGEST_TOKEN, free_port


def test_sigkill_loses_no_acknowledged_event(data_dir, tmp_path, spawn_serve):
    from ingest.verify import verify
    from tooltrail.config import load_config
    from tooltrail.query import ReadOnlyQuery

    rng = random.Random(11)
    srv = spawn_serve(free_port())
    out, stop = tmp_path / "acked.txt", tmp_path / "stop"
    client = subprocess.Popen([sys.executable, "-m", "tests.http.load_client", srv.url, INGEST_TOKEN, str(out),
                               str(stop), "4", "50"], cwd=ROOT, env=cli_env(data_dir), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)

    def acked_lines() -> int:
        return len(out.read_text().splitlines()) if out.exists() else 0

    def wait_progress(at_least: int, timeout: float = 60.0) -> None:
        deadline = time.time() + timeout
        while acked_lines() < at_least:
            assert time.time() < deadline, "the client makes no progress"
            assert client.poll() is None, client.communicate()[1].decode()[-2000:]
            time.sleep(0.05)

    kills = 0
    try:
        for _ in range(4):
            wait_progress(acked_lines() + 10)  # traffic is flowing (again) ...
            time.sleep(rng.random() * 0.7)  # ... then kill at a random moment mid-stream
            srv.kill(signal.SIGKILL)
            kills += 1
            srv.start()
        wait_progress(acked_lines() + 10)
    finally:
        stop.touch()
        try:
            cout, cerr = client.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            client.kill()
            raise
    assert client.returncode == 0, cerr.decode()[-2000:]
    srv.kill(signal.SIGTERM)  # graceful: seals and signs
    assert srv.proc.returncode in (0, -signal.SIGTERM), srv.log.read_text()[-2000:]
    assert '"collector_stopped"' in srv.log.read_text()
    acked = [i for line in out.read_text().splitlines() for i in line.split()]
    assert len(acked) >= 2000, f"only {len(acked)} events acknowledged ({cout.decode()})"
    assert kills == 4
    stored = [r["event_id"] for r in ReadOnlyQuery.at(data_dir).rows("select event_id from events", limit=10_000_000)]
    assert len(stored) == len(set(stored)), "an event is stored twice"
    missing = set(acked) - set(stored)
    assert not missing, f"{len(missing)} acknowledged events lost"
    rep = verify(load_config(data_dir=str(data_dir), env={}).layout, save=False)
    assert rep.ok, rep.to_dict()
