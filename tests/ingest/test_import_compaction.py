"""`tooltrail import` merges the small segments it wrote (one per batch) into large ones at the
end, in each worker for its own chain; --no-compact leaves them. Content, chain and proofs stay
as imported: verify passes and every event is there once."""

from __future__ import annotations

import json
import subprocess
import sys

import orjson
import pytest

from ingest.layout import Layout
from ingest.segments import live_segments
from tests.conftest import ROOT, cli_env, make_event
from tooltrail.query import ReadOnlyQuery

N = 50_000  # three batches of 20,000 lines: three segments per chain before compaction (1 worker)


@pytest.fixture
def events_file(tmp_path):
    src = tmp_path / "events.jsonl"
    with open(src, "wb") as fh:
        for i in range(N):
            fh.write(orjson.dumps(make_event(i)) + b"\n")
    return src


def _import(data_dir, src, *extra: str) -> dict:
    env = cli_env(data_dir) | {"TOOLTRAIL_STORAGE__COMPACT_MIN_SEGMENTS": "2"}
    done = subprocess.run([sys.executable, "-m", "tooltrail.cli", "import", str(src), "--no-progress", *extra],
                          cwd=ROOT, env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return json.loads(done.stdout.decode().splitlines()[-1])


def _segments(data_dir) -> dict[str, int]:
    lay = Layout.at(data_dir)
    return {c: len(live_segments(lay, c)) for c in lay.chain_ids()}


def _verify_ok(data_dir) -> None:
    run = subprocess.run([sys.executable, "-m", "tooltrail.cli", "verify", "--json"], cwd=ROOT, env=cli_env(data_dir),
                         capture_output=True, timeout=300)
    report = json.loads(run.stdout)
    assert run.returncode == 0 and report["ok"] and report["events"] == N, run.stdout.decode()[-2000:]


@pytest.mark.parametrize("workers", [1, 2])
def test_import_compacts_each_chain_and_still_verifies(data_dir, events_file, workers):
    totals = _import(data_dir, events_file, "--workers", str(workers))
    assert totals["stored"] == N
    segs = _segments(data_dir)
    assert set(segs.values()) == {1}, segs  # every chain: its batches merged into one segment
    assert totals["compacted_segments"] >= 2 * workers
    _verify_ok(data_dir)
    q = ReadOnlyQuery.at(data_dir)
    assert q.scalar("select count(distinct event_id) from events") == N
    # a session's events come back complete and in chain order from the merged segment
    rows = q.rows("select session, seq, chain_id from events where session = ? order by chain_id, seq",
                  [make_event(7)["session"]], limit=N)
    assert rows and all(r["session"] == make_event(7)["session"] for r in rows)


def test_no_compact_leaves_the_segments_as_written(data_dir, events_file):
    totals = _import(data_dir, events_file, "--no-compact")
    assert totals["compacted_segments"] == 0
    assert _segments(data_dir) == {"import": 3}
    _verify_ok(data_dir)


def test_reimport_stores_nothing_twice_and_merges_nothing_more(data_dir, events_file):
    _import(data_dir, events_file)
    merged = live_segments(Layout.at(data_dir), "import")
    again = _import(data_dir, events_file)
    assert (again["stored"], again["duplicates"], again["compacted_segments"]) == (0, N, 0)
    assert live_segments(Layout.at(data_dir), "import") == merged
    _verify_ok(data_dir)
