"""Shared fixtures: a fresh data dir with config, and a stand-in for nothing - every test
uses the real write path, real files and real fsync."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SEED_EVENT = {
    "ts": "2026-05-29T11:04:22Z",
    "principal": "user_8842",
    "token_id": "tok_9f...",
    "tool": "get_open_invoices",
    "args": {"customer_id": 5512},
    "decision": "allow",
    "scope_checked": "invoices:read",
    "session": "s_31a",
    "result": "ok",
    "latency_ms": 88,
}


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture
def config(data_dir: Path):
    from tooltrail.config import load_config

    return load_config(data_dir=str(data_dir), env={})


def make_event(i: int, **over) -> dict:
    ev = dict(SEED_EVENT)
    ev.update(event_id=f"ev-{i:07d}", session=f"s-{i % 17}", principal=f"user_{i % 5}",
              args={"customer_id": i, "note": f"invoice lookup {i}"})
    ev.update(over)
    return ev


def cli_env(data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["TOOLTRAIL_DATA_DIR"] = str(data_dir)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env
