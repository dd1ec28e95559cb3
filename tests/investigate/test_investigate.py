"""Investigation end to end: generated traffic with an injected exfiltration chain goes through
the real write path (Ingestor) with live detection (DetectionEngine) and webhook delivery; the
on-call engineer takes the alert id from the webhook and investigates / exports with the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.conftest import ROOT, cli_env
from tests.delivery.conftest import SECRET, snippet_verifier
from tests.delivery.receiver import Receiver


def cli(capsys, data_dir: Path, *args: str, config: Path | None = None, codes=(0,)):
    """The CLI in-process (fast); `tt` runs it as a user does, in a subprocess."""
    from tooltrail.cli import main

    capsys.readouterr()
    code = main(["--data-dir", str(data_dir), *(["--config", str(config)] if config else []), *args])
    out, err = capsys.readouterr()
    assert code in codes, (args, code, out[-3000:], err[-3000:])
    return out, err


def tt(data_dir: Path, *args: str, config: Path | None = None, codes=(0,), cwd: Path = ROOT):
    cmd = [sys.executable, "-m", "tooltrail.cli", *(["--config", str(config)] if config else []), *args]
    proc = subprocess.run(cmd, cwd=cwd, env=cli_env(data_dir), capture_output=True, timeout=120)
    assert proc.returncode in codes, (args, proc.returncode, proc.stdout.decode()[-3000:], proc.stderr.decode()[-3000:])
    return proc


@pytest.fixture(scope="module")
def incident(tmp_path_factory):
    from detect.delivery import attach
    from detect.engine import DetectionEngine, Listener
    from detect.timeutil import ts_epoch
    from detect.traffic import DEMO_CATALOG, exfiltration_session, generate
    from ingest.pipeline import Ingestor
    from tooltrail.config import load_config

    root = tmp_path_factory.mktemp("incident")
    data = root / "data"
    rcv = Receiver()
    cfg_path = root / "tooltrail.toml"
    cfg_path.write_text(f"""
[detect]
catalog_file = "{DEMO_CATALOG}"

[[alerting.webhooks]]
name = "oncall"
url = "{rcv.url}"
secrets = ["{SECRET}"]
rule_ids = ["TT-EXFIL-*"]
allow_private = true
allow_http = true
""")
    cfg = load_config(str(cfg_path), data_dir=str(data), env={})
    traffic = [le.event for le in generate(seed=7, days=2, principals=8, kinds=("exfil_chain",), attacks_per_kind=1)
               if le.event is not None]
    chain = exfiltration_session(principal="mallory", session="s-exfil-1", start=ts_epoch(traffic[len(traffic) // 2]["ts"]))
    events = sorted(traffic + chain, key=lambda e: e["ts"])
    ing = Ingestor.open(cfg, chain_id="http")
    engine = DetectionEngine.from_config(cfg)
    dispatcher = attach(engine.store, cfg)
    ing.add_listener(Listener(engine))
    for i in range(0, len(events), 400):
        res = ing.submit(events[i:i + 400], source="gw-1")
        assert not res.rejected
    ing.close()  # seals the last segment and signs a checkpoint
    engine.save_state()
    assert rcv.wait_for(lambda r: any(orjson.loads(x.body)["data"]["entities"]["session"] == "s-exfil-1" for x in r))
    dispatcher.close()
    yield {"data": data, "config": cfg_path, "receiver": rcv, "root": root, "cfg": cfg}
    rcv.close()


def _webhook_alert_id(rcv) -> str:
    for x in rcv.received:
        d = orjson.loads(x.body)["data"]
        if d["entities"]["session"] == "s-exfil-1":
            assert snippet_verifier()(SECRET, x.headers, x.body)
            return d["alert_id"]
    raise AssertionError("no webhook for the injected chain")


def test_alert_id_from_the_webhook_finds_the_chain_in_one_command(incident):
    aid = _webhook_alert_id(incident["receiver"])
    out = tt(incident["data"], "investigate", "alert", aid, "--format", "json", config=incident["config"])
    got = json.loads(out.stdout)
    assert got["alert"]["alert_id"] == aid and got["alert"]["rule_id"] == "TT-EXFIL-001"
    assert got["alert"]["principal"] == "mallory"
    evs = got["events"]
    assert [e["tool"] for e in evs] == ["read_email", "read_file", "send_email"]  # the whole chain, in order
    assert [e["evidence"] for e in evs] == [False, True, True]
    assert all(e["session"] == "s-exfil-1" and e["chain_status"] == "signed" for e in evs)
    assert aid in evs[2]["alerts"]
    assert "evil-mail.net" in evs[2]["args"]
    # the webhook's evidence pointers (chain, seq, hash) are the stored events' chain positions
    hook = [orjson.loads(x.body)["data"] for x in incident["receiver"].received]
    cited = next(h for h in hook if h["alert_id"] == aid)["evidence"]
    assert [(e["event_id"], e["chain_id"], e["seq"], e["hash"]) for e in cited] == \
        [(e["event_id"], e["chain_id"], e["seq"], e["hash"]) for e in evs[1:]]
    # the table form an analyst reads, with a prefix of the id
    table = tt(incident["data"], "investigate", "alert", aid[:10], config=incident["config"]).stdout.decode()
    for needle in ("TT-EXFIL-001", "mallory", "read_email", "read_file", "send_email", "runbook"):
        assert needle in table
    csv_out = tt(incident["data"], "investigate", "alert", aid, "--format", "csv", config=incident["config"]).stdout.decode()
    assert csv_out.splitlines()[0].startswith("evidence,ts,") and len(csv_out.strip().splitlines()) == 4


def test_exported_bundle_verifies_offline_and_one_changed_byte_fails(incident, tmp_path):
    aid = _webhook_alert_id(incident["receiver"])
    bundle = tmp_path / "incident.json"
    tt(incident["data"], "export", "--alert", aid, "-o", str(bundle), "--by", "alice", config=incident["config"])
    doc = orjson.loads(bundle.read_bytes())
    assert doc["format"] == "tooltrail.proof.v1" and len(doc["events"]) == 3
    assert doc["meta"]["kind"] == "tooltrail.evidence.v1" and doc["meta"]["exported_by"] == "alice"
    assert doc["meta"]["export"]["by"] == "alert" and doc["meta"]["export"]["alert_id"] == aid
    assert set(doc["meta"]["export"]["evidence_ids"]) == {"s-exfil-1-1", "s-exfil-1-2"}
    # another machine: a copy of the file, no data dir, run from elsewhere
    other = tmp_path / "elsewhere"
    other.mkdir()
    copy = other / "incident.json"
    shutil.copy(bundle, copy)
    empty = tmp_path / "no-data"
    ok = tt(empty, "verify-bundle", str(copy), cwd=other)
    assert ok.stdout.decode().startswith("OK: 3 event(s)") and f"alert {aid}" in ok.stdout.decode()
    assert not empty.exists() or not any(empty.iterdir())
    assert tt(empty, "verify-proof", str(copy), cwd=other).returncode == 0  # the same checks
    key = (incident["data"] / "keys" / "signing.pub").read_text().strip()
    assert tt(empty, "verify-bundle", str(copy), "--trusted-key", key, cwd=other).returncode == 0
    raw = bundle.read_bytes()
    for needle in (b"drop@evil-mail.net", b'"signature": "', b'"path": [\n        "'):
        pos = raw.index(needle) + len(needle) - 1
        pos += 1 if needle.endswith(b'"') else 0
        tampered = bytearray(raw)
        tampered[pos] = ord("0") if tampered[pos] != ord("0") else ord("1")
        bad = other / "tampered.json"
        bad.write_bytes(bytes(tampered))
        out = tt(empty, "verify-bundle", str(bad), "--json", codes=(1,), cwd=other)
        res = json.loads(out.stdout)
        assert res["ok"] is False and res["problems"], needle
    # a different trusted key rejects the bundle
    from ingest.signing import Signer

    other_key = Signer.load(tmp_path / "k").public_b64()
    assert tt(empty, "verify-bundle", str(copy), "--trusted-key", other_key, codes=(1,), cwd=other).returncode == 1


def test_export_by_session_and_time_range(incident, tmp_path, capsys):
    d, c = incident["data"], incident["config"]
    b1, b2 = tmp_path / "s.json", tmp_path / "r.json"
    cli(capsys, d, "export", "--session", "s-exfil-1", "-o", str(b1), config=c)
    assert len(orjson.loads(b1.read_bytes())["events"]) == 3
    first = orjson.loads(b1.read_bytes())["events"][0]
    ts = orjson.loads(first["record"])["ts"]
    cli(capsys, d, "export", "--since", ts, "--until", "2100-01-01", "--principal", "mallory", "-o", str(b2), config=c)
    doc = orjson.loads(b2.read_bytes())
    assert len(doc["events"]) == 3 and doc["meta"]["export"]["by"] == "time_range"
    assert "principal = ?" in doc["meta"]["export"]["query"]["sql"]
    out = cli(capsys, d, "verify-bundle", str(b2))[0]
    assert out.startswith("OK: 3 event(s)") and "events " in out
    miss = cli(capsys, d, "export", "--session", "nope", "-o", str(tmp_path / "x.json"), codes=(2,))[1]
    assert "no stored events" in miss
    assert "say what to export" in cli(capsys, d, "export", "-o", str(tmp_path / "y.json"), codes=(2,))[1]


def test_session_principal_tool_views(incident, capsys):
    d, c = incident["data"], incident["config"]
    rows = json.loads(cli(capsys, d, "investigate", "session", "s-exfil-1", "--verify", "--format", "json", config=c)[0])
    assert [r["tool"] for r in rows] == ["read_email", "read_file", "send_email"]
    assert {r["chain_status"] for r in rows} == {"verified"}
    assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)
    table = cli(capsys, d, "investigate", "session", "s-exfil-1", config=c)[0]
    assert "send_email" in table and "signed" in table
    summ = json.loads(cli(capsys, d, "investigate", "principal", "mallory", "--summary", "--format", "json", config=c)[0])
    assert len(summ) == 1 and summ[0]["session"] == "s-exfil-1" and summ[0]["events"] == 3 and len(summ[0]["alerts"]) == 1
    acts = json.loads(cli(capsys, d, "investigate", "principal", "mallory", "--since", "2000-01-01", "--until", "now",
                          "--format", "json", config=c)[0])
    assert len(acts) == 3
    callers = cli(capsys, d, "investigate", "tool", "send_email", "--summary", "--format", "csv", config=c)[0]
    assert callers.splitlines()[0].startswith("principal,servers,calls") and "mallory" in callers
    calls = json.loads(cli(capsys, d, "investigate", "tool", "send_email", "--server", "gmail", "--format", "json",
                           config=c)[0])
    assert any(r["principal"] == "mallory" and r["decision"] == "allow" for r in calls)
    bad = cli(capsys, d, "investigate", "principal", "mallory", "--since", "yesterday-ish", codes=(2,))[1]
    assert "not a time" in bad
    assert "no alert" in cli(capsys, d, "investigate", "alert", "al_nope", codes=(2,))[1]


def test_saved_queries_from_the_cli(incident, capsys):
    d, c = incident["data"], incident["config"]
    aid = _webhook_alert_id(incident["receiver"])
    rows = json.loads(tt(d, "query", "--saved", "alert_evidence", "--param", f"alert_id={aid}", "--format", "json",
                         config=c).stdout)
    assert [r["event_id"] for r in rows] == ["s-exfil-1-1", "s-exfil-1-2"]
    rows = json.loads(cli(capsys, d, "query", "--saved", "principal_timeline", "--param", "principal=mallory", "--param",
                          "since=2000-01-01", "--format", "json", config=c)[0])
    assert [r["tool"] for r in rows] == ["read_email", "read_file", "send_email"]
    names = {r["name"] for r in json.loads(cli(capsys, d, "query", "--list-saved", "--format", "json", config=c)[0])}
    assert {"alert_evidence", "principal_timeline", "tool_callers", "secret_reuse"} <= names
    assert "needs a value" in cli(capsys, d, "query", "--saved", "alert_evidence", codes=(2,))[1]
    assert "no parameter" in cli(capsys, d, "query", "--saved", "alert_evidence", "--param", "x=1", codes=(2,))[1]
    assert "no saved query" in cli(capsys, d, "query", "--saved", "nope", codes=(2,))[1]
    # a user's own query in <data>/queries
    (d / "queries").mkdir(exist_ok=True)
    (d / "queries" / "mine.sql").write_text("-- title: Mine\n-- param: p text mallory\n"
                                            "select count(*) as n from events where principal = $p and tool <> '$p'\n")
    assert json.loads(cli(capsys, d, "query", "--saved", "mine", "--format", "json", config=c)[0]) == [{"n": 3}]
    # every shipped query runs (with its defaults / a sample value)
    from tooltrail.query import ReadOnlyQuery
    from tooltrail.saved import list_saved, run_saved

    rq = ReadOnlyQuery.at(d)
    sample = {"alert_id": aid, "principal": "mallory", "tool": "send_email", "marker": "[REDACTED:x:00]"}
    for q in list_saved():
        vals = {p.name: sample.get(p.name, "x") for p in q.params if p.required}
        run_saved(rq, q.name, vals)


def test_alerts_list_deliveries_and_resend(incident, capsys):
    d, c, rcv = incident["data"], incident["config"], incident["receiver"]
    aid = _webhook_alert_id(rcv)
    listed = json.loads(cli(capsys, d, "alerts", "list", "--rule", "TT-EXFIL-*", "--format", "json", config=c)[0])
    mine = [r for r in listed if r["alert_id"] == aid]
    assert mine and mine[0]["delivery"] == "oncall:delivered" and mine[0]["session"] == "s-exfil-1"
    assert "TT-EXFIL-001" in cli(capsys, d, "alerts", "list", "--status", "open", "--min-severity", "high", config=c)[0]
    dl = json.loads(cli(capsys, d, "alerts", "deliveries", "--alert", aid, "--attempts", "--format", "json", config=c)[0])
    assert [(a["n"], a["status"], a["outcome"]) for a in dl] == [(1, 200, "delivered")]
    before = [x for x in rcv.received if orjson.loads(x.body)["data"]["alert_id"] == aid]
    out = tt(d, "alerts", "resend", aid, "--wait", "10", config=c)  # no delivery process runs: delivered here
    assert "delivered" in out.stdout.decode()
    after = [x for x in rcv.received if orjson.loads(x.body)["data"]["alert_id"] == aid]
    assert len(after) == len(before) + 1
    assert len({x.headers["webhook-id"] for x in after}) == 1 and after[-1].body == before[0].body
    dests = json.loads(cli(capsys, d, "alerts", "destinations", "--format", "json", config=c)[0])
    assert dests[0]["destination"] == "oncall" and dests[0]["enabled"] == "yes" and dests[0]["routing"].endswith("TT-EXFIL-*")
    assert "127.0.0.1" not in json.dumps(dests) and SECRET not in json.dumps(dests)
    assert cli(capsys, d, "alerts", "secret")[0].startswith("whsec_")
