"""?format=NAME: gateway audit records through the adapters (ingest.adapters), over HTTP."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.http.conftest import H, wait_sealed

SAMPLES = Path(__file__).resolve().parents[1] / "adapters" / "samples"


@pytest.mark.parametrize(("fmt", "sample", "ctype"), [
    ("toolhive", "toolhive.jsonl", "application/x-ndjson"),
    ("agentgateway", "agentgateway.jsonl", "application/x-ndjson"),
    ("otlp", "otlp_execute_tool.jsonl", "application/x-ndjson"),
    ("obot", "obot.jsonl", "application/x-ndjson"),
])
def test_gateway_formats(server, data_dir, fmt, sample, ctype):
    pytest.importorskip("ingest.adapters")
    path = SAMPLES / sample
    if not path.exists():
        pytest.skip(f"no sample {sample}")
    body = path.read_bytes()
    r = server.client.post(f"/v1/events?format={fmt}", content=body, headers={**H, "Content-Type": ctype})
    assert r.status_code in (200, 207), r.text
    res = r.json()
    assert res["stored"] > 0, res
    assert "skipped" in res
    for e in res["errors"]:
        assert e["field"] and e["reason"]
    again = server.client.post(f"/v1/events?format={fmt}", content=body, headers={**H, "Content-Type": ctype}).json()
    assert again["stored"] == 0 and again["duplicates"] == res["stored"]
    rows = wait_sealed(data_dir, res["stored"])
    assert len(rows) == res["stored"] and {x["source"] for x in rows} == {"gw1"}


def test_unmappable_records_are_rejected_with_the_adapters_reason(server):
    pytest.importorskip("ingest.adapters")
    lines = (SAMPLES / "toolhive.jsonl").read_bytes().splitlines()
    good = [ln for ln in lines if ln.strip()][:1]
    body = b"\n".join([*good, orjson.dumps({"hello": "world"}), b"{not json"]) + b"\n"
    r = server.client.post("/v1/events?format=toolhive", content=body, headers={**H, "Content-Type": "application/x-ndjson"})
    res = r.json()
    assert r.status_code in (200, 207), res
    bad = {e["index"]: e for e in res["errors"]}
    assert 2 in bad and "invalid JSON" in bad[2]["reason"] and bad[2]["line"] == 3
    if res["skipped"] == 0:
        assert 1 in bad and "cannot map record" in bad[1]["reason"]
