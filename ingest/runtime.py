"""Process-level tuning for processes that run the write path."""

from __future__ import annotations

import gc


def tune_gc() -> None:
    """Every event makes a few short-lived dicts and no cycles; the default gen-0 threshold
    (700 allocations) runs the cycle collector thousands of times per batch. Collect less
    often, and keep the objects of start-up out of every collection. Call it in every
    process that ingests (the CLI does; spawned workers must too)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 10)
