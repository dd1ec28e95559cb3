"""The hash chain: every event links to the one before it.

    leaf  = SHA-256(0x00 || canonical_record)                      (RFC 6962 leaf)
    hash  = SHA-256("tooltrail.chain.v1" 0x00 || prev_hash || leaf)  (raw 32-byte values)
    prev_hash of seq 0 = SHA-256("tooltrail.genesis.v1" 0x00 || chain_id)
"""

from __future__ import annotations

import hashlib

from ingest.merkle import leaf_hash

CHAIN_DOMAIN = b"tooltrail.chain.v1\x00"
GENESIS_DOMAIN = b"tooltrail.genesis.v1\x00"
_sha256 = hashlib.sha256


def genesis_hash(chain_id: str) -> str:
    return _sha256(GENESIS_DOMAIN + chain_id.encode()).hexdigest()


def link(prev_hash: str, leaf: bytes) -> str:
    return _sha256(CHAIN_DOMAIN + bytes.fromhex(prev_hash) + leaf).hexdigest()


def chain_hash(prev_hash: str, data: bytes) -> tuple[bytes, str]:
    """(leaf hash, chain hash) of one canonical record."""
    leaf = leaf_hash(data)
    return leaf, link(prev_hash, leaf)
