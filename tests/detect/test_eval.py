"""Measured quality gate: every injected kind detected, <= 1 false alert / 10,000 benign events."""

from __future__ import annotations

from detect.evaluate import evaluate, format_table


def test_quality_on_generated_traffic():
    res = evaluate(seed=11, days=4, principals=40, attacks_per_kind=2)
    table = format_table(res)
    print(table)
    missed = {k: v for k, v in res.kinds.items() if v["recall"] < 1.0}
    assert missed == {}, table
    assert res.false_per_10k <= 1.0, table
    assert res.benign_events > 25_000
