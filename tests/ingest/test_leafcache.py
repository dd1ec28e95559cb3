"""The proof cache gives exactly the RFC 6962 paths, and a wrong cache never yields a wrong proof."""

from __future__ import annotations

import pytest

from ingest import leafcache
from ingest.layout import Layout
from ingest.merkle import inclusion_proof, leaf_hash
from ingest.pipeline import Ingestor
from ingest.proofs import prove, verify_bundle
from tests.conftest import make_event


@pytest.mark.parametrize("size", [1, 2, 1023, 1024, 1025, 2048, 3000, 4097])
def test_cached_paths_equal_reference_paths(tmp_path, size):
    layout = Layout.at(tmp_path).ensure()
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    leafcache.append(layout, "c", 0, leaves[: size // 2])
    leafcache.append(layout, "c", size // 2, leaves[size // 2:])
    tree = leafcache.CachedTree(layout, "c", size)
    for i in sorted({0, 1, size // 3, size // 2, size - 2, size - 1} & set(range(size))):
        assert tree.inclusion_path(i) == inclusion_proof(leaves, i)


def test_writer_fills_the_cache_and_prove_uses_it(config):
    config.storage.checkpoint_every_events = 1
    with Ingestor.open(config, "p", direct=True) as ing:
        for b in range(3):
            ing.submit([make_event(b * 1500 + i) for i in range(1500)], source="gw")
    lpath, bpath = leafcache.paths(config.layout, "p")
    assert lpath.stat().st_size == 4500 * 32 and bpath.stat().st_size == 4 * 32
    bundle = prove(config.layout, "ev-0002345")
    assert verify_bundle(bundle).ok


def test_corrupt_cache_falls_back_to_an_exact_proof(config):
    with Ingestor.open(config, "p", direct=True) as ing:
        ing.submit([make_event(i) for i in range(2100)], source="gw")
    lpath, bpath = leafcache.paths(config.layout, "p")
    data = bytearray(bpath.read_bytes())
    data[5] ^= 1  # a wrong block root
    bpath.write_bytes(bytes(data))
    assert verify_bundle(prove(config.layout, "ev-0000010")).ok


def test_missing_cache_is_rebuilt_by_the_writer_on_open(config):
    with Ingestor.open(config, "p", direct=True) as ing:
        ing.submit([make_event(i) for i in range(1500)], source="gw")
    lpath, bpath = leafcache.paths(config.layout, "p")
    lpath.unlink()
    bpath.unlink()
    with Ingestor.open(config, "p", direct=True):
        pass
    assert lpath.stat().st_size == 1500 * 32 and bpath.stat().st_size == 32
    assert verify_bundle(prove(config.layout, "ev-0001499")).ok
