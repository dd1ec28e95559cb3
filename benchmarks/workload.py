"""Synthetic but realistic tool-call events for benchmarks (deterministic by seed).

Sessions of 5-60 calls by ~500 principals across common MCP servers; ~3% denied; ~2% of
events carry a credential in their arguments (so redaction does real work)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson

TOOLS = [
    ("filesystem", "read_file", lambda r: {"path": f"/home/dev/project/src/module_{r.randint(1, 400)}.py"}),
    ("filesystem", "write_file",
     lambda r: {"path": f"/home/dev/project/out/{r.randint(1, 99)}.txt", "content": "x" * r.randint(10, 200)}),
    ("github", "search_code", lambda r: {"query": f"repo:acme/app function_{r.randint(1, 999)}", "per_page": 30}),
    ("github", "create_issue",
     lambda r: {"repo": "acme/app", "title": f"Bug {r.randint(1, 9999)}", "body": "Steps to reproduce ..."}),
    ("postgres", "query",
     lambda r: {"sql": f"select id, total from invoices where customer_id = {r.randint(1, 99999)} limit 50"}),
    ("slack", "post_message", lambda r: {"channel": "#eng-builds", "text": f"build {r.randint(1, 9999)} passed"}),
    ("fetch", "fetch", lambda r: {"url": f"https://docs.example.com/page/{r.randint(1, 500)}", "max_length": 5000}),
    ("gmail", "send_email",
     lambda r: {"to": "teammate@acme.example", "subject": "weekly report", "body": "See attached numbers."}),
]
SECRETS = [
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
    "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
]


def events(n: int, seed: int = 1, start: datetime | None = None) -> Iterator[dict]:
    """n events about 0.2 s apart; by default ending about an hour before now (the write path
    rejects timestamps more than 5 minutes in the future)."""
    r = random.Random(seed)
    t = start or (datetime.now(UTC) - timedelta(seconds=n * 0.21 + 3600)).replace(minute=0, second=0, microsecond=0)
    i = 0
    while i < n:
        principal = f"user_{r.randint(0, 499)}"
        session = f"s-{seed}-{i:09d}"
        for _ in range(r.randint(5, 60)):
            if i >= n:
                break
            server, tool, mk = r.choice(TOOLS)
            args = mk(r)
            if r.random() < 0.02:
                args["note"] = f"use key {r.choice(SECRETS)} for this"
            denied = r.random() < 0.03
            t += timedelta(milliseconds=r.randint(1, 400))
            yield {
                "event_id": f"bench-{seed}-{i:010d}", "ts": t.isoformat(), "principal": principal, "agent": "claude-desktop",
                "session": session, "server": server, "tool": tool, "args": args,
                "decision": "deny" if denied else "allow", "scope_checked": f"{server}:{tool}",
                "result": "denied" if denied else "ok", "latency_ms": r.randint(2, 900), "result_bytes": r.randint(0, 50000),
            }
            i += 1


def write_jsonl(path: str, n: int, seed: int = 1) -> None:
    with open(path, "wb") as fh:
        for ev in events(n, seed):
            fh.write(orjson.dumps(ev) + b"\n")
