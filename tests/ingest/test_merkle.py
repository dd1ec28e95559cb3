"""RFC 6962 Merkle tree pinned to the Certificate Transparency known-answer vectors, plus
property tests: every inclusion and consistency proof verifies and a flipped bit fails."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.merkle import (
    EMPTY_ROOT,
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    range_heights,
    root,
    verify_consistency,
    verify_inclusion,
)

LEAVES = [bytes.fromhex(h) for h in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                       "606162636465666768696a6b6c6d6e6f"]]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
INCLUSION = {
    (0, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
             "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    (5, 8): ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
             "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
}
CONSISTENCY = {
    (2, 8): ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
}


def test_rfc6962_roots():
    hashes = [leaf_hash(x) for x in LEAVES]
    assert root([]).hex() == EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    for n in range(1, 9):
        assert root(hashes[:n]).hex() == ROOTS[n - 1]
        cr = CompactRange()
        cr.extend(hashes[:n])
        assert cr.root().hex() == ROOTS[n - 1]


def test_rfc6962_proof_vectors():
    hashes = [leaf_hash(x) for x in LEAVES]
    for (i, n), want in INCLUSION.items():
        assert [p.hex() for p in inclusion_proof(hashes[:n], i)] == want
    for (m, n), want in CONSISTENCY.items():
        assert [p.hex() for p in consistency_proof(hashes[:n], m)] == want


def _flip(b: bytes, bit: int) -> bytes:
    i = (bit // 8) % len(b)
    return b[:i] + bytes([b[i] ^ (1 << (bit % 8))]) + b[i + 1:]


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 300), data=st.data())
def test_inclusion_proofs_verify_and_bit_flips_fail(n, data):
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
    r = root(leaves)
    i = data.draw(st.integers(0, n - 1))
    proof = inclusion_proof(leaves, i)
    assert verify_inclusion(leaves[i], i, n, proof, r)
    bit = data.draw(st.integers(0, 255))
    assert not verify_inclusion(_flip(leaves[i], bit), i, n, proof, r)
    assert not verify_inclusion(leaves[i], i, n, proof, _flip(r, bit))
    if proof:
        k = data.draw(st.integers(0, len(proof) - 1))
        bad = list(proof)
        bad[k] = _flip(bad[k], bit)
        assert not verify_inclusion(leaves[i], i, n, bad, r)
    if n > 1:
        assert not verify_inclusion(leaves[i], (i + 1) % n, n, proof, r)


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 300), data=st.data())
def test_consistency_proofs_verify_and_bit_flips_fail(n, data):
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
    m = data.draw(st.integers(1, n))
    r1, r2 = root(leaves[:m]), root(leaves)
    proof = consistency_proof(leaves, m)
    assert verify_consistency(m, n, r1, r2, proof)
    bit = data.draw(st.integers(0, 255))
    assert not verify_consistency(m, n, _flip(r1, bit), r2, proof)
    assert not verify_consistency(m, n, r1, _flip(r2, bit), proof)
    if proof:
        k = data.draw(st.integers(0, len(proof) - 1))
        bad = list(proof)
        bad[k] = _flip(bad[k], bit)
        assert not verify_consistency(m, n, r1, r2, bad)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(0, 600), data=st.data())
def test_compact_ranges_merged_equal_leaves_appended_one_by_one(n, data):
    """verify builds each segment's ranges in a worker (split at checkpoint sizes) and merges
    them: every prefix it reaches must have the frontier and root of one-by-one appends."""
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
    cuts = sorted(data.draw(st.sets(st.integers(0, n), max_size=8)) | {0, n})
    merged = CompactRange()
    for a, b in zip(cuts, cuts[1:], strict=False):
        part = CompactRange.of_leaves(leaves[a:b], a)
        one_by_one = CompactRange(a, [], begin=a)
        one_by_one.extend(leaves[a:b])
        assert (part.begin, part.size, part.nodes) == (a, b, one_by_one.nodes)
        assert len(part.nodes) == len(range_heights(a, b))
        merged.merge(part)
        reference = CompactRange()
        reference.extend(leaves[:b])
        assert (merged.size, merged.nodes) == (reference.size, reference.nodes)
        assert merged.root() == reference.root() == root(leaves[:b])


def test_compact_range_merge_rejects_gaps_and_partial_roots():
    leaves = [leaf_hash(bytes([i])) for i in range(10)]
    head = CompactRange.of_leaves(leaves[:4])
    with pytest.raises(ValueError):
        head.merge(CompactRange.of_leaves(leaves[5:], 5))
    tail = CompactRange.of_leaves(leaves[4:], 4)
    with pytest.raises(ValueError):
        tail.root()
    with pytest.raises(ValueError):
        CompactRange(7, [leaves[0]], begin=3)
    head.merge(tail)
    assert head.root() == root(leaves)
