"""An in-memory stand-in for the read layer, with the same `sql()` signature, used by the unit
tests of the dashboard's rendering (empty and error states) that do not need a real store."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa


class FakeQuery:
    def __init__(self, tables: dict[str, pa.Table] | None = None, fail: str | None = None) -> None:
        self.con = duckdb.connect()
        self.fail = fail
        for name, tbl in (tables or {}).items():
            self.con.register(f"_{name}", tbl)
            self.con.execute(f"create table {name} as select * from _{name}")

    def sql(self, sql: str, params: list[Any] | None = None, limit: int = 1000, timeout_s: float = 10) -> pa.Table:
        if self.fail:
            raise RuntimeError(self.fail)
        cur = self.con.cursor()  # one cursor per call: the server is threaded
        tbl = cur.execute(sql, params or []).to_arrow_table()
        return tbl.slice(0, limit)


def make_events(n: int = 500, seed: int = 1) -> tuple[list[dict], list[dict]]:
    rnd = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    tools = [
        ("filesystem", "read_file"),
        ("github", "list_issues"),
        ("slack", "post_message"),
        ("fetch", "fetch"),
        ("gmail", "send_email"),
        ("postgres", "query"),
    ]
    events = []
    for i in range(n):
        server, tool = rnd.choice(tools)
        ts = now - timedelta(seconds=rnd.randint(0, 3 * 3600))
        events.append(
            {
                "event_id": f"ev-{i}",
                "ts": ts,
                "principal": rnd.choice(["alice", "bob", "svc-ci"]),
                "agent": "claude",
                "session": f"s-{rnd.randint(0, 20)}",
                "server": server,
                "tool": tool,
                "decision": "deny" if rnd.random() < 0.05 else "allow",
                "result": "ok",
            }
        )
    events.sort(key=lambda e: e["ts"])
    base = now - timedelta(minutes=30)
    chain = [
        {
            "event_id": "ev-x1",
            "ts": base,
            "principal": "mallory",
            "agent": "claude",
            "session": "s-exfil",
            "server": "filesystem",
            "tool": "read_file",
            "decision": "allow",
            "result": "ok",
        },
        {
            "event_id": "ev-x2",
            "ts": base + timedelta(seconds=20),
            "principal": "mallory",
            "agent": "claude",
            "session": "s-exfil",
            "server": "gmail",
            "tool": "send_email",
            "decision": "allow",
            "result": "ok",
        },
    ]
    events += chain
    for seq, e in enumerate(events):
        e.update(
            chain_id="local",
            seq=seq,
            received_at=e["ts"],
            source="test",
            scope_checked=None,
            latency_ms=12.0,
            result_bytes=100,
            reason=None,
            error=None,
            redaction_count=0,
            prev_hash="0" * 64,
            hash=f"{seq:064x}",
        )
        e["record"] = json.dumps(
            {
                k: (v.isoformat() if isinstance(v, datetime) else v)
                for k, v in e.items()
                if k not in ("prev_hash", "hash")
            }
        )
    alert = {
        "alert_id": "al_exfil",
        "rule_id": "TT-EXFIL-001",
        "title": "Exfiltration chain: private read then external send",
        "severity": "high",
        "status": "open",
        "principal": "mallory",
        "session": "s-exfil",
        "first_seen": chain[0]["ts"],
        "last_seen": chain[1]["ts"],
        "match_count": 1,
        "description": "A private read followed by an external write.",
        "runbook": "1. Check the recipient.",
        "evidence": json.dumps(
            [{"event_id": e["event_id"], "chain_id": "local", "seq": e["seq"], "hash": e["hash"]} for e in chain]
        ),
        "entities": json.dumps({"principal": "mallory", "session": "s-exfil", "tools": ["read_file", "send_email"]}),
        "tags": json.dumps(["exfiltration"]),
        "history": "[]",
    }
    return events, [alert]


def fake_tables(n: int = 500) -> dict[str, pa.Table]:
    events, alerts = make_events(n)
    return {
        "events": pa.Table.from_pylist(events),
        "alerts": pa.Table.from_pylist(alerts),
        "checkpoints": pa.Table.from_pylist(
            [
                {
                    "chain_id": "local",
                    "size": len(events) - 2,
                    "root": "a" * 64,
                    "head": "b" * 64,
                    "time": datetime.now(UTC),
                    "key_id": "k",
                    "signature": "x",
                }
            ]
        ),
        "quarantine": pa.Table.from_pylist([{"source": "test", "field": "ts", "reason": "missing"}]),
    }
