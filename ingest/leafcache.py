"""A cache of Merkle leaf hashes and block roots, so inclusion proofs take milliseconds
instead of rehashing a whole chain.

    lake/merkle/<chain>.leaves   32-byte leaf hashes, leaf i at offset 32*i
    lake/merkle/<chain>.blocks   32-byte roots of complete 1,024-leaf blocks, block b at 32*b

The chain's writer appends to both when a segment seals. The cache is not trusted: nothing
that verifies integrity reads it, and `ingest.proofs` checks every bundle it builds against
the signed checkpoint and falls back to rehashing the chain if the cache disagrees. A cache
that is missing or shorter than the chain (crash, old data) is extended from the segments.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ingest.layout import Layout
from ingest.merkle import _split, leaf_hash, node_hash, root

BLOCK = 1024
HASH = 32


def paths(layout: Layout, chain_id: str) -> tuple[Path, Path]:
    d = layout.lake / "merkle"
    return d / f"{chain_id}.leaves", d / f"{chain_id}.blocks"


def append(layout: Layout, chain_id: str, first_seq: int, leaves: list[bytes]) -> None:
    """Writer side: add the leaves of a sealed segment (and any blocks they complete).
    Only appends in order; a gap (the cache fell behind) is left for `extend` to fill."""
    lpath, bpath = paths(layout, chain_id)
    lpath.parent.mkdir(parents=True, exist_ok=True)
    have = lpath.stat().st_size // HASH if lpath.exists() else 0
    if first_seq != have:
        return
    with open(lpath, "ab") as fh:
        fh.write(b"".join(leaves))
    _extend_blocks(lpath, bpath, first_seq + len(leaves))


def _extend_blocks(lpath: Path, bpath: Path, n_leaves: int) -> None:
    have_blocks = bpath.stat().st_size // HASH if bpath.exists() else 0
    want_blocks = n_leaves // BLOCK
    if want_blocks <= have_blocks:
        return
    out = []
    with open(lpath, "rb") as fh:
        fh.seek(have_blocks * BLOCK * HASH)
        for _ in range(have_blocks, want_blocks):
            data = fh.read(BLOCK * HASH)
            out.append(root([data[i:i + HASH] for i in range(0, len(data), HASH)]))
    with open(bpath, "ab") as fh:
        fh.write(b"".join(out))


def extend(layout: Layout, chain_id: str, size: int, records: Callable[[int, int], list[bytes]]) -> None:
    """Bring the cache up to `size` leaves; `records(a, b)` yields canonical records a..b-1."""
    lpath, bpath = paths(layout, chain_id)
    lpath.parent.mkdir(parents=True, exist_ok=True)
    have = lpath.stat().st_size // HASH if lpath.exists() else 0
    if have * HASH != (lpath.stat().st_size if lpath.exists() else 0):
        with open(lpath, "r+b") as fh:  # a torn append: drop the partial hash
            fh.truncate(have * HASH)
    if have < size:
        with open(lpath, "ab") as fh:
            fh.write(b"".join(leaf_hash(r) for r in records(have, size)))
    if bpath.exists() and bpath.stat().st_size % HASH:
        os.truncate(bpath, bpath.stat().st_size // HASH * HASH)
    _extend_blocks(lpath, bpath, size)


class CachedTree:
    """Subtree roots and inclusion paths of the first `size` leaves, read from the cache."""

    def __init__(self, layout: Layout, chain_id: str, size: int) -> None:
        self.size = size
        self._lpath, self._bpath = paths(layout, chain_id)
        data = b""
        if size >= BLOCK:
            with open(self._bpath, "rb") as fh:
                data = fh.read((size // BLOCK) * HASH)
        self._block_data = data
        if len(data) < (size // BLOCK) * HASH:
            raise LookupError("block cache is shorter than the tree")

    def leaves(self, lo: int, hi: int) -> list[bytes]:
        with open(self._lpath, "rb") as fh:
            fh.seek(lo * HASH)
            data = fh.read((hi - lo) * HASH)
        if len(data) != (hi - lo) * HASH:
            raise LookupError("leaf cache is shorter than the tree")
        return [data[i:i + HASH] for i in range(0, len(data), HASH)]

    def block(self, b: int) -> bytes:
        return self._block_data[b * HASH:(b + 1) * HASH]

    def subtree_root(self, lo: int, hi: int) -> bytes:
        n = hi - lo
        if lo % BLOCK == 0 and n % BLOCK == 0:
            # an aligned run of whole blocks: its RFC 6962 root is the root over block roots
            return root([self.block(b) for b in range(lo // BLOCK, hi // BLOCK)])
        if n <= BLOCK:
            return root(self.leaves(lo, hi))
        k = _split(n)
        return node_hash(self.subtree_root(lo, lo + k), self.subtree_root(lo + k, hi))

    def leaf(self, index: int) -> bytes:
        return self.leaves(index, index + 1)[0]

    def inclusion_path(self, index: int) -> list[bytes]:
        """RFC 6962 PATH(index, D[0:size]), as ingest.merkle.inclusion_proof computes it."""
        if not 0 <= index < self.size:
            raise ValueError(f"index {index} outside tree of size {self.size}")
        path: list[bytes] = []
        lo, hi = 0, self.size
        while hi - lo > 1:
            k = _split(hi - lo)
            if index < lo + k:
                path.append(self.subtree_root(lo + k, hi))
                hi = lo + k
            else:
                path.append(self.subtree_root(lo, lo + k))
                lo = lo + k
        path.reverse()
        return path
