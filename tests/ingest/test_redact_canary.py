"""Canary: 10,000 events with unique secrets through the real write path (plus invalid input
that carries secrets into quarantine), then every byte under the data dir and every captured
log line is searched for every secret. Zero hits allowed.

Parquet segments are compressed, so they are searched both as raw bytes and decoded
(every column of every row). The search uses 8-char probes taken at every offset of every
secret fragment and looks at the scanned text every 9th offset: any occurrence of a
fragment of >= 16 characters contains one such window (checked, then confirmed in full).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import orjson
import pytest

from tests.ingest.redaction_corpus import PLACEMENTS, SECRET_TYPES, gen_secret, make_case

N_EVENTS = 10_000
N_INVALID = 300
PROBE = 8
MIN_FRAGMENT = 16
STRIDE = MIN_FRAGMENT - PROBE + 1


class FragmentIndex:
    def __init__(self, fragments: list[str]) -> None:
        self.fragments = fragments
        self.probes: dict[str, set[int]] = {}
        for i, f in enumerate(fragments):
            assert len(f) >= MIN_FRAGMENT
            for j in range(len(f) - PROBE + 1):
                self.probes.setdefault(f[j:j + PROBE], set()).add(i)

    def hits(self, text: str) -> set[int]:
        found: set[int] = set()
        probes = self.probes
        for p in range(0, max(0, len(text) - PROBE + 1), STRIDE):
            ids = probes.get(text[p:p + PROBE])
            if ids:
                for i in ids:
                    f = self.fragments[i]
                    if f in text[max(0, p - len(f)):p + len(f) + PROBE]:
                        found.add(i)
        return found


def _fresh_case(i: int, rng: random.Random):
    t = SECRET_TYPES[i % len(SECRET_TYPES)]
    placement = PLACEMENTS[(i // len(SECRET_TYPES)) % len(PLACEMENTS)]
    while True:
        sec = gen_secret(t, rng)
        if all(len(f) >= MIN_FRAGMENT for f in sec.must_not_survive):
            return make_case(t, placement, rng, sec)


def _invalid_items(rng: random.Random, n: int) -> tuple[list, list[str]]:
    """Rejected input that carries secrets: missing fields, bad values, unknown fields named
    by a secret, and bytes that are not JSON at all."""
    items, frags = [], []
    # self-identifying formats: the name of a field or a bare value carries no key-name context
    types = [t for t in SECRET_TYPES if t not in ("password", "secret_field", "high_entropy", "basic_auth",
                                                   "bearer_token")]
    for i in range(n):
        while True:
            sec = gen_secret(types[i % len(types)], rng)
            if all(len(f) >= MIN_FRAGMENT for f in sec.must_not_survive):
                break
        frags += sec.must_not_survive
        kind = i % 4
        if kind == 0:  # missing principal
            items.append({"ts": "2026-05-29T11:04:22Z", "session": "s", "tool": "t", "decision": "allow",
                          "args": {"note": sec.snippet}})
        elif kind == 1:  # invalid enum value that *is* the secret
            items.append({"ts": "2026-05-29T11:04:22Z", "principal": "p", "session": "s", "tool": "t",
                          "decision": sec.snippet, "args": {}})
        elif kind == 2:  # unknown field whose name is the secret
            items.append({"ts": "2026-05-29T11:04:22Z", "principal": "p", "session": "s", "tool": "t",
                          "decision": "allow", sec.snippet: 1})
        else:  # truncated JSON bytes
            items.append(b'{"ts": "2026-05-29T11:04:22Z", "args": {"note": "' + sec.snippet.encode() + b'", ')
    return items, frags


def _file_texts(root: Path) -> list[tuple[Path, str]]:
    import pyarrow.parquet as pq

    out = []
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        data = p.read_bytes()
        out.append((p, data.decode("latin-1")))
        if p.suffix == ".parquet":
            rows = pq.read_table(p).to_pylist()
            out.append((p, orjson.dumps(rows, default=str).decode()))
    return out


class _NoRedaction:
    def redact_fields(self, fields):
        return dict(fields), {}

    def redact_many(self, batch):
        return [self.redact_fields(f) for f in batch]

    def redact_text(self, text):
        return (text.decode("utf-8", "replace") if isinstance(text, bytes) else text), {}

    def redact_value(self, value):
        return value, {}


def _run_canary(data_dir: Path, n_events: int, n_invalid: int, redactor=None):
    """Ingest, close, and return (leaks, stored, redacted_events, rejected, scanned texts)."""
    from ingest.pipeline import Ingestor
    from tooltrail.config import load_config

    cfg = load_config(None, data_dir=str(data_dir), env={})
    rng = random.Random(20260529)
    cases = [_fresh_case(i, rng) for i in range(n_events)]
    for i, c in enumerate(cases):
        c.fields["event_id"] = f"canary-{i:06d}"
    invalid, invalid_frags = _invalid_items(rng, n_invalid)
    index = FragmentIndex([f for c in cases for f in c.must_not_survive] + invalid_frags)

    stored, rejected, redacted_events, leaks = 0, 0, 0, []
    ing = Ingestor.open(cfg, "canary", redactor=redactor) if redactor else Ingestor.open(cfg, "canary")
    try:
        batch: list = []
        inv = iter(invalid)
        every = max(1, n_events // max(1, n_invalid))
        for i, c in enumerate(cases):
            batch.append(c.fields)
            if i % every == 0:
                item = next(inv, None)
                if item is not None:
                    batch.append(item)
            if len(batch) >= 500 or i == len(cases) - 1:
                res = ing.submit(batch, source="canary")
                stored += res.stored
                rejected += len(res.rejected)
                redacted_events += sum(1 for rec in res.records if rec["redactions"])
                msgs = orjson.dumps([[r.field, r.reason] for r in res.rejected]).decode()
                leaks += [("<rejections>", i) for i in index.hits(msgs)]
                batch = []
        rest = list(inv)
        if rest:
            rejected += len(ing.submit(rest, source="canary").rejected)
    finally:
        ing.close()
    texts = _file_texts(data_dir)
    for path, text in texts:
        leaks += [(str(path), i) for i in index.hits(text)]
    return leaks, stored, redacted_events, rejected, texts, index


@pytest.mark.slow
def test_canary_no_secret_reaches_disk_or_logs(tmp_path, capfd, caplog):
    from tooltrail.logs import configure_logging

    configure_logging("debug")
    caplog.set_level(logging.DEBUG)
    leaks, stored, redacted_events, rejected, texts, index = _run_canary(tmp_path / "data", N_EVENTS, N_INVALID)
    assert stored == N_EVENTS
    assert redacted_events == N_EVENTS  # every event recorded at least one redaction
    assert rejected >= N_INVALID
    assert any(p.suffix == ".parquet" for p, _ in texts)
    assert any("quarantine" in p.parts for p, _ in texts)
    captured = capfd.readouterr()
    for name, text in (("<stdout>", captured.out), ("<stderr>", captured.err), ("<logging>", caplog.text)):
        leaks += [(name, i) for i in index.hits(text)]
    assert not leaks, f"{len(leaks)} secret fragments found on disk/in logs, e.g. {leaks[:5]}"


def test_canary_would_catch_a_leak(tmp_path):
    """Negative control: without redaction the same scan finds the secrets on disk."""
    leaks, stored, *_ = _run_canary(tmp_path / "data", 300, 20, redactor=_NoRedaction())
    assert stored == 300
    where = {Path(p).suffix or p for p, _ in leaks}
    assert ".parquet" in where and ".jsonl" in where  # segments (decoded) and quarantine
    assert len({i for _, i in leaks}) > 300


def test_fragment_index_finds_embedded_fragments():
    frags = ["ghp_0123456789abcdefghijABCDEFGHIJ0123", "S3cr3t-Passw0rd!#%x"]
    idx = FragmentIndex(frags)
    for pad in range(12):
        text = "x" * pad + "prefix=" + frags[1] + " and " + frags[0][3:] + frags[0] + "yy"
        assert idx.hits(text) == {0, 1}
    assert idx.hits("nothing to see " * 100) == set()
