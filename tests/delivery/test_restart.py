"""A killed delivery process resumes from the outbox: nothing lost, one id, one success."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from detect.delivery.outbox import read_attempts, read_messages
from tests.conftest import ROOT
from tests.delivery.conftest import SECRET, hook, make_config, snippet_verifier
from tests.delivery.receiver import Receiver

PROC = ROOT / "tests" / "delivery" / "outbox_proc.py"


def _start(cfg_path, *extra):
    p = subprocess.Popen([sys.executable, str(PROC), str(cfg_path), *extra], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    assert p.stdout.readline().strip() == b"ready"
    return p


def test_killed_and_restarted_process_resumes_delivery_from_the_outbox(data_dir, tmp_path):
    rcv = Receiver(default=(500, {}))
    procs = []
    try:
        cfg = make_config(data_dir, [hook(rcv.url, backoff_base_s=0.2, backoff_max_s=0.4, max_attempts=20)])
        cfg_path = tmp_path / "cfg.json"
        cfg_path.write_text(cfg.model_dump_json())  # SecretStr would be masked: write the secret back
        cfg_path.write_text(cfg_path.read_text().replace('"**********"', f'"{SECRET}"'))
        p1 = _start(cfg_path, "--raise")
        procs.append(p1)
        assert rcv.wait_for(lambda r: len(r) >= 2)             # in the middle of its retries ...
        os.kill(p1.pid, signal.SIGKILL)                          # ... the process dies hard
        p1.wait(10)
        before = len(rcv.received)
        [msg] = read_messages(cfg.layout.state_dir)
        assert msg["state"] == "pending" and msg["attempts"] >= 1  # the in-flight attempt may be unrecorded
        rcv.default = (200, {})
        p2 = _start(cfg_path, "--raise")                         # restart; the detector replays the same alert
        procs.append(p2)
        assert rcv.wait_for(lambda r: any(x.status == 200 for x in r))
        p2.send_signal(signal.SIGTERM)
        assert p2.wait(15) == 0
        got = rcv.received
        assert len(got) > before
        assert sum(1 for x in got if x.status == 200) == 1
        assert len({x.headers["webhook-id"] for x in got}) == 1   # same id across the restart
        assert len({x.body for x in got}) == 1
        verify_webhook = snippet_verifier()
        assert all(verify_webhook(SECRET, x.headers, x.body) for x in got)
        [msg] = read_messages(cfg.layout.state_dir)
        assert msg["state"] == "delivered"
        log = read_attempts(cfg.layout.state_dir, [msg["msg_id"]])
        assert [a["n"] for a in log] == list(range(1, len(log) + 1)) and log[-1]["outcome"] == "delivered"
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        rcv.close()
