"""Helpers for delivery tests: alerts from a real AlertStore, configs pointing at loopback."""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.delivery.receiver import Receiver

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
SECRET2 = "whsec_" + base64.b64encode(b"rotated-secret-bytes-0123456789").decode()


def snippet_verifier():
    """The receiver snippet from README.md, executed as documented."""
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- receiver-snippet -->\s*```python\n(.*?)```", text, re.S)
    assert m, "receiver snippet missing from README.md"
    ns: dict = {}
    exec(compile(m.group(1), "alerting.md", "exec"), ns)
    return ns["verify_webhook"]


def make_config(data_dir: Path, webhooks: list[dict], **alerting):
    from tooltrail.config import load_config

    cfg = load_config(data_dir=str(data_dir), env={})
    return cfg.model_validate({**cfg.model_dump(), "alerting": {"webhooks": webhooks, **alerting}})


def hook(url: str, name: str = "ops", **kw) -> dict:
    d = {"name": name, "url": url, "secrets": [SECRET], "allow_private": True, "allow_http": True,
         "backoff_base_s": 0.05, "backoff_max_s": 0.2, "timeout_s": 5}
    d.update(kw)
    return d


def raise_alert(store, rule_id: str = "TT-EXFIL-001", session: str = "s-1", severity: str = "high",
                tags: tuple[str, ...] = ("exfiltration",), n: int = 1, t: float | None = None):
    from detect.alerts import Match, RuleMeta
    from detect.timeutil import epoch_ts

    meta = RuleMeta(rule_id, 1, "Exfiltration chain", severity, tags, "desc", "1. look", "sequence")
    t = t if t is not None else 1_780_000_000.0
    ev = [{"event_id": f"{session}-{i}", "chain_id": "http", "seq": i, "hash": "ab" * 32, "ts": epoch_ts(t + i),
           "principal": "mallory", "session": session, "tool": "send_email", "server": "gmail"} for i in range(n)]
    aid = store.add_match(Match(meta, t + n, f"{rule_id}|session={session}", ev, {"dest": "evil"}))
    store.flush()
    return aid


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def wait(pred, timeout: float = 15.0) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()
