"""Recall and false-positive rate of the redactor on generated corpora.

Recall: every secret type x every placement (secret-named key, innocuous key, prose, nested
lists/objects, command line / URL, error/reason text) plus encoded variants (base64, URL-safe
base64, percent-encoding), through both entry points: `redact_fields` (the write path) and
`redact_text` over the event's JSON (the quarantine path). Must be 100%.

False positives: >= 1,000 look-alike values (UUIDs, SHAs, digests, prose about passwords and
tokens, paths, URLs without credentials, order numbers, SQL, placeholders, ...) must stay
untouched in >= 99% of cases, and so must realistic clean events.
"""

from __future__ import annotations

import collections
import random

import orjson
import pytest

from ingest.redact import Redactor
from tests.ingest.redaction_corpus import PLACEMENTS, SECRET_TYPES, lookalikes, realistic_events, secret_cases

MAX_FP_RATE = 0.01


@pytest.fixture(scope="module")
def r() -> Redactor:
    return Redactor(b"corpus-test-key-0123456789abcdef")


@pytest.fixture(scope="module", params=[1, 2])
def cases(request):
    return secret_cases(seed=request.param, per_type=3)


def test_corpus_covers_every_type_and_placement(cases):
    seen = collections.Counter((c.type, c.placement) for c in cases)
    assert len(PLACEMENTS) >= 5 + 3  # five placements + error text, plus three encodings
    for t in SECRET_TYPES:
        for p in PLACEMENTS:
            assert seen[(t, p)] >= 3, (t, p)


def _leaks(c, text: str) -> list[str]:
    return [s for s in c.must_not_survive if s in text]


def test_recall_write_path(r, cases):
    missed, wrong_type = [], []
    for c in cases:
        out, counts = r.redact_fields(c.fields)
        if _leaks(c, orjson.dumps(out).decode()):
            missed.append(c.id)
        elif c.expect_types and not (c.expect_types & set(counts)):
            wrong_type.append((c.id, counts))
        assert sum(counts.values()) >= 1
    recall = 1 - len(missed) / len(cases)
    assert recall == 1.0, f"recall {recall:.4f}; missed {missed[:20]}"
    assert not wrong_type, wrong_type[:20]


@pytest.mark.parametrize("chunk", [1, 16, 64])
def test_batch_gate_gives_the_same_result_as_each_event_alone(r, cases, chunk):
    """redact_many clears whole chunks with one gate match; mixed with clean events in any
    order, every corpus secret must still come out exactly as redact_fields gives it."""
    clean = realistic_events(400)
    batch = [c.fields for c in cases] + clean
    random.Random(chunk).shuffle(batch)
    got = r.redact_many(batch, chunk=chunk)
    assert got == [r.redact_fields(f) for f in batch]
    assert sum(1 for _, counts in got if counts) >= len(cases)


def test_recall_quarantine_text_path(r, cases):
    missed = [c.id for c in cases if _leaks(c, r.redact_text(orjson.dumps(c.fields).decode())[0])]
    assert not missed, f"recall {1 - len(missed) / len(cases):.4f}; missed {missed[:20]}"


def test_recall_per_string(r, cases):
    """Each string of each case on its own (log messages, error strings)."""
    missed = []
    for c in cases:
        if c.placement == "secret_key":
            continue  # needs the key name, covered above
        strings: list[str] = []
        _strings(c.fields["args"], strings)
        strings += [c.fields[k] for k in ("error", "reason") if k in c.fields]
        out = " | ".join(r.redact_text(s)[0] for s in strings)
        if _leaks(c, out):
            missed.append(c.id)
    assert not missed, missed[:20]


def _strings(v, acc: list[str]) -> None:
    if isinstance(v, str):
        acc.append(v)
    elif isinstance(v, dict):
        for x in v.values():
            _strings(x, acc)
    elif isinstance(v, list):
        for x in v:
            _strings(x, acc)


def test_lookalikes_false_positive_rate(r):
    corpus = lookalikes()
    assert len(corpus) >= 1000
    fp_fields, fp_text = [], []
    for cat, v in corpus:
        args = v if isinstance(v, dict) else {"note": v}
        out, counts = r.redact_fields({"args": args})
        if counts:
            fp_fields.append((cat, v, counts))
        if not isinstance(v, dict) and r.redact_text(v)[1]:
            fp_text.append((cat, v))
    rate_f, rate_t = len(fp_fields) / len(corpus), len(fp_text) / len(corpus)
    print(f"\nlook-alikes: {len(corpus)} values, false positives: fields {rate_f:.2%}, text {rate_t:.2%}")
    assert rate_f <= MAX_FP_RATE, fp_fields[:20]
    assert rate_t <= MAX_FP_RATE, fp_text[:20]


def test_lookalike_categories_present():
    cats = collections.Counter(c for c, _ in lookalikes())
    for need in ("uuid", "git_sha", "sha256", "prose", "path", "url", "order", "sql", "placeholder"):
        assert cats[need] >= 50, need


def test_realistic_clean_events_untouched(r):
    events = realistic_events(3000, seed=11, secret_ratio=0.0)
    changed = [e["event_id"] for e in events if r.redact_fields(e)[1]]
    assert len(changed) / len(events) <= MAX_FP_RATE, changed[:10]
