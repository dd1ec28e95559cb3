"""The CLI as a user runs it: real subprocesses, real files."""

from __future__ import annotations

import json
import subprocess
import sys

import orjson
import pytest

from tests.conftest import ROOT, SEED_EVENT, cli_env, make_event


def tt(data_dir, *args, stdin: bytes | None = None, check_codes=(0,)):
    proc = subprocess.run([sys.executable, "-m", "tooltrail.cli", *args], cwd=ROOT, env=cli_env(data_dir),
                          capture_output=True, input=stdin, timeout=300)
    assert proc.returncode in check_codes, (proc.returncode, proc.stdout.decode()[-2000:], proc.stderr.decode()[-2000:])
    return proc


@pytest.fixture
def imported(data_dir, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(orjson.dumps(make_event(i)) + b"\n" for i in range(200)))
    out = tt(data_dir, "import", str(src), "--source", "gw-eu", "--no-progress")
    assert json.loads(out.stdout) == {"stored": 200, "duplicates": 0, "quarantined": 0, "skipped": 0,
                                      "compacted_segments": 0}
    return data_dir


def test_import_from_stdin_quarantines_bad_lines_with_exit_3(data_dir):
    body = orjson.dumps(SEED_EVENT) + b"\n\n" + b'{"ts": 1}\n' + b"not json\n"
    out = tt(data_dir, "import", "-", "--no-progress", stdin=body, check_codes=(3,))
    assert json.loads(out.stdout) == {"stored": 1, "duplicates": 0, "quarantined": 2, "skipped": 0,
                                      "compacted_segments": 0}
    q = tt(data_dir, "query", "select origin, reasons from quarantine order by origin", "--format", "json")
    rows = json.loads(q.stdout)
    assert [r["origin"] for r in rows] == ["stdin:3", "stdin:4"]
    assert "principal" in rows[0]["reasons"] and "invalid JSON" in rows[1]["reasons"]


def test_query_formats_and_params(imported):
    out = tt(imported, "query", "select count(*) as n, min(source) as s from events where principal = $p",
             "--param", "p=user_1", "--format", "json")
    assert json.loads(out.stdout) == [{"n": 40, "s": "gw-eu"}]
    csv_out = tt(imported, "query", "select seq from events order by seq", "--format", "csv", "--limit", "3").stdout.decode()
    assert csv_out.split() == ["seq", "0", "1", "2"]
    table = tt(imported, "query", "select tool from events limit 1").stdout.decode()
    assert "get_open_invoices" in table


def test_query_refuses_writes_with_a_clear_error(imported):
    out = tt(imported, "query", "drop view events", check_codes=(2,))
    assert "only SELECT" in out.stderr.decode()


def test_verify_prove_and_verify_proof(imported, tmp_path):
    out = tt(imported, "verify", "--json")
    rep = json.loads(out.stdout)
    assert rep["ok"] and rep["events"] == 200 and rep["chains"][0]["unsigned_tail"] == 0
    proof = tmp_path / "proof.json"
    tt(imported, "prove", "ev-0000042", "-o", str(proof))
    assert "OK" in tt(imported, "verify-proof", str(proof)).stdout.decode()
    bundle = json.loads(proof.read_text())
    bundle["events"][0]["record"] = bundle["events"][0]["record"].replace("user_2", "user_3")
    proof.write_text(json.dumps(bundle))
    assert "FAILED" in tt(imported, "verify-proof", str(proof), check_codes=(1,)).stdout.decode()


def test_verify_exits_nonzero_on_tampering(imported):
    seg = next((imported / "lake" / "events").rglob("*.parquet"))
    import pyarrow.parquet as pq

    t = pq.read_table(seg)
    rows = t.to_pylist()
    rows[0]["tool"] = "delete_everything"
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(rows, schema=t.schema), seg)
    out = tt(imported, "verify", check_codes=(1,))
    assert "first bad: seq" in out.stdout.decode() and "column_mismatch" in out.stdout.decode()


def test_unknown_event_id_is_a_user_error(imported):
    out = tt(imported, "prove", "nope", check_codes=(2,))
    assert "not in any sealed segment" in out.stderr.decode()


def test_config_file_and_env_precedence(tmp_path):
    from tooltrail.config import load_config

    cfg_file = tmp_path / "tt.toml"
    cfg_file.write_text('data_dir = "/tmp/from-file"\n[http]\nport = 9001\n[storage]\nsegment_max_rows = 500\n')
    cfg = load_config(cfg_file, env={"TOOLTRAIL_HTTP__PORT": "9002", "TOOLTRAIL_API_KEYS": "gw=tok1,gw2=tok2"})
    assert (cfg.data_dir, cfg.http.port, cfg.storage.segment_max_rows) == ("/tmp/from-file", 9002, 500)
    assert cfg.http.api_keys == {"gw": "tok1", "gw2": "tok2"}
    with pytest.raises(ValueError):
        load_config(env={"TOOLTRAIL_API_KEYS": "garbage"})
    bad = tmp_path / "bad.toml"
    bad.write_text("[storage]\nsegment_max_rowz = 1\n")
    with pytest.raises(ValueError):
        load_config(bad, env={})
