"""RFC 6962 / RFC 9162 Merkle tree: leaf and node hashes, roots, inclusion and consistency
proofs, and their verification. Pinned to the Certificate Transparency known-answer vectors
in tests/ingest/test_merkle.py.

Leaf hash  = SHA-256(0x00 || data); node hash = SHA-256(0x01 || left || right);
the root of n leaves splits at the largest power of two smaller than n.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

_sha256 = hashlib.sha256
EMPTY_ROOT = _sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """Root over leaf hashes (iterative: bottom-up pairing equals the RFC's recursive split)."""
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def range_heights(begin: int, end: int) -> list[int]:
    """Heights of the perfect subtrees that exactly cover leaves [begin, end), left to right
    (the maximal aligned nodes of the tree; for begin 0, the binary digits of end)."""
    out: list[int] = []
    while begin < end:
        h = (end - begin).bit_length() - 1  # the largest subtree that fits, if begin is aligned to it
        if begin:
            h = min(h, (begin & -begin).bit_length() - 1)
        out.append(h)
        begin += 1 << h
    return out


def perfect_root(leaves: Sequence[bytes]) -> bytes:
    """Root of a perfect subtree (len(leaves) a power of two), one level at a time."""
    level = leaves
    sha, one = _sha256, b"\x01"
    while len(level) > 1:
        it = iter(level)
        level = [sha(one + a + b).digest() for a, b in zip(it, it, strict=True)]
    return level[0]


class CompactRange:
    """Merkle compact range of leaves [begin, size): O(log n) state.

    `nodes` are the roots of the perfect subtrees that cover the range (see `range_heights`).
    With begin 0 (the default) this is the append-only frontier of a tree of `size` leaves,
    whose root is known at any time. Ranges of adjacent leaves merge in O(log n) hashes
    (`merge`), so a tree can be built in independent pieces."""

    __slots__ = ("size", "nodes", "begin")

    def __init__(self, size: int = 0, nodes: list[bytes] | None = None, *, begin: int = 0) -> None:
        self.begin = begin
        self.size = size  # one past the last leaf: the tree size when begin is 0
        self.nodes: list[bytes] = list(nodes or [])
        if not 0 <= begin <= size or len(self.nodes) != len(range_heights(begin, size)):
            raise ValueError("compact range does not match its size")

    @classmethod
    def of_leaves(cls, leaves: Sequence[bytes], begin: int = 0) -> CompactRange:
        """The compact range of `leaves` placed at positions begin.. (~len(leaves) hashes)."""
        nodes: list[bytes] = []
        off = 0
        for h in range_heights(begin, begin + len(leaves)):
            nodes.append(perfect_root(leaves[off:off + (1 << h)]))
            off += 1 << h
        return cls(begin + len(leaves), nodes, begin=begin)

    def _push(self, node: bytes, height: int) -> None:
        """Append the root of a perfect subtree of 2**height leaves starting at `size`."""
        pos, h = self.size >> height, height
        # Merge with the left sibling while this node is a right child and the sibling lies in the range.
        while pos & 1 and (pos - 1) << h >= self.begin:
            node = node_hash(self.nodes.pop(), node)
            pos >>= 1
            h += 1
        self.nodes.append(node)
        self.size += 1 << height

    def append(self, leaf: bytes) -> None:
        if self.begin:
            self._push(leaf, 0)
            return
        node = leaf
        s = self.size
        while s & 1:
            node = node_hash(self.nodes.pop(), node)
            s >>= 1
        self.nodes.append(node)
        self.size += 1

    def extend(self, leaves: Sequence[bytes]) -> None:
        for leaf in leaves:
            self.append(leaf)

    def merge(self, other: CompactRange) -> None:
        """Extend this range by the adjacent range `other` (other.begin == self.size)."""
        if other.begin != self.size:
            raise ValueError(f"ranges are not adjacent: [{self.begin}, {self.size}) and [{other.begin}, {other.size})")
        for node, h in zip(other.nodes, range_heights(other.begin, other.size), strict=True):
            self._push(node, h)

    def root(self) -> bytes:
        if self.begin:
            raise ValueError("only a range that starts at leaf 0 has a root")
        if not self.nodes:
            return EMPTY_ROOT
        acc = self.nodes[-1]
        for node in reversed(self.nodes[:-1]):
            acc = node_hash(node, acc)
        return acc

    def copy(self) -> CompactRange:
        return CompactRange(self.size, self.nodes, begin=self.begin)


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """RFC 6962 PATH(index, leaves)."""
    n = len(leaves)
    if not 0 <= index < n:
        raise ValueError(f"index {index} outside tree of size {n}")
    path: list[bytes] = []
    lo, hi = 0, n
    # Walk down, collecting the sibling subtree roots; reversed at the end (leaf to root).
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(root(leaves[lo + k:hi]))
            hi = lo + k
        else:
            path.append(root(leaves[lo:lo + k]))
            lo = lo + k
    path.reverse()
    return path


def consistency_proof(leaves: Sequence[bytes], m: int) -> list[bytes]:
    """RFC 6962 PROOF(m, leaves): proves the tree of size m is a prefix of this one."""
    n = len(leaves)
    if not 0 < m <= n:
        raise ValueError(f"old size {m} must be in 1..{n}")
    if m == n:
        return []

    def subproof(m: int, lo: int, hi: int, complete: bool) -> list[bytes]:
        size = hi - lo
        if m == size:
            return [] if complete else [root(leaves[lo:hi])]
        k = _split(size)
        if m <= k:
            return subproof(m, lo, lo + k, complete) + [root(leaves[lo + k:hi])]
        return subproof(m - k, lo + k, hi, False) + [root(leaves[lo:lo + k])]

    return subproof(m, 0, n, True)


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes) -> bool:
    """RFC 9162 section 2.1.3.2."""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root


def verify_consistency(size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]) -> bool:
    """RFC 9162 section 2.1.4.2."""
    if size1 < 1 or size1 > size2:
        return False
    if size1 == size2:
        return not proof and root1 == root2
    if not proof:
        return False
    proof = list(proof)
    if size1 & (size1 - 1) == 0:  # a power of two: the old root is the first node
        proof.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == root1 and sr == root2
