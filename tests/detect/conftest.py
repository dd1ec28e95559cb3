from __future__ import annotations

import functools

import pytest


@functools.lru_cache(maxsize=4)
def _traffic(seed: int, days: int, principals: int) -> tuple:
    from detect.traffic import generate

    return tuple(generate(seed=seed, days=days, principals=principals, attacks=True, attacks_per_kind=1))


@pytest.fixture(scope="session")
def small_traffic():
    """~15k labeled events over 3 days with one attack of every kind."""
    return list(_traffic(7, 3, 16))


@pytest.fixture(scope="session")
def small_records(small_traffic):
    from detect.evaluate import build_records

    return build_records(small_traffic, validate=False)
