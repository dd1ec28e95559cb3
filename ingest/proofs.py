"""Inclusion-proof bundles: a self-contained file that proves events are in a signed log.

Bundle (JSON, format "tooltrail.proof.v1"):
    {format, created_at, public_key (base64 Ed25519), checkpoints: {chain_id: Checkpoint},
     events: [{chain_id, seq, leaf_index, tree_size, record (canonical JSON text),
               prev_hash, hash, path: [hex]}], meta: {...}}
`verify_bundle` checks it offline: every record is canonical, links to its hash, its leaf
is included under the signed root, and the checkpoint signature verifies.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from cryptography.exceptions import InvalidSignature

from ingest.chain import link
from ingest.checkpoints import read_checkpoints
from ingest.layout import Layout
from ingest.leafcache import CachedTree
from ingest.merkle import inclusion_proof, leaf_hash, verify_inclusion
from ingest.segments import live_segments
from ingest.signing import key_id, load_public_key, public_key_from_b64, public_raw, verify_checkpoint
from schemas.canonical import canonical_bytes
from schemas.checkpoint import Checkpoint
from schemas.stored import format_ts
from tooltrail.logs import get_logger

log = get_logger("tooltrail.proofs")

BUNDLE_FORMAT = "tooltrail.proof.v1"


class ProofError(LookupError):
    pass


def _chain_leaves(layout: Layout, chain_id: str, size: int) -> list[bytes]:
    leaves: list[bytes] = []
    for info in live_segments(layout, chain_id):
        if info.first_seq >= size:
            break
        t = pq.read_table(layout.lake / info.path, columns=["seq", "record"]).sort_by("seq")
        for rec in t.column("record").cast(pa.binary()).to_pylist():
            if len(leaves) >= size:
                break
            leaves.append(leaf_hash(rec))
    if len(leaves) < size:
        raise ProofError(f"chain {chain_id} holds {len(leaves)} events, fewer than the checkpoint's {size}")
    return leaves


def _chain_events(layout: Layout, chain_id: str, cp: Checkpoint, chain_rows: list[tuple[str, int, str, str, str]]
                  ) -> list[dict]:
    """Proof entries of one chain's rows: from the leaf cache when it holds the tree and
    every path leads to the signed root; otherwise by rehashing the chain (slow, exact)."""
    root = bytes.fromhex(cp.root)

    def entries(path_of: Any) -> list[dict]:
        return [{"chain_id": chain_id, "seq": seq, "leaf_index": seq, "tree_size": cp.size, "record": record,
                 "prev_hash": prev, "hash": h, "path": [p.hex() for p in path_of(seq)]}
                for _, seq, record, prev, h in chain_rows]

    try:
        tree = CachedTree(layout, chain_id, cp.size)
        out = entries(tree.inclusion_path)
        if all(verify_inclusion(leaf_hash(e["record"].encode()), e["seq"], cp.size, [bytes.fromhex(p) for p in e["path"]],
                                root) for e in out):
            return out
        log.warning("leaf_cache_disagrees", chain_id=chain_id, size=cp.size)
    except (OSError, LookupError, ValueError):
        pass  # no cache (yet) for this tree size
    leaves = _chain_leaves(layout, chain_id, cp.size)
    return entries(lambda seq: inclusion_proof(leaves, seq))


def locate(layout: Layout, event_ids: Iterable[str]) -> list[tuple[str, int, str, str, str]]:
    """(chain_id, seq, record, prev_hash, hash) of each event id found."""
    ids = list(event_ids)
    files = [str(layout.lake / s.path) for c in layout.chain_ids() for s in live_segments(layout, c)]
    if not files or not ids:
        return []
    con = duckdb.connect()
    return con.execute(
        "SELECT chain_id, seq, record, prev_hash, hash FROM read_parquet(?) WHERE event_id IN (SELECT unnest(?)) "
        "ORDER BY chain_id, seq", [files, ids]).fetchall()


def build_bundle(layout: Layout, rows: list[tuple[str, int, str, str, str]], meta: dict[str, Any] | None = None) -> dict:
    """Proofs for stored rows against the latest checkpoint of each chain covering them."""
    pub = load_public_key(layout.keys)
    by_chain: dict[str, list[tuple[str, int, str, str, str]]] = {}
    for r in rows:
        by_chain.setdefault(r[0], []).append(r)
    checkpoints: dict[str, dict] = {}
    events: list[dict] = []
    for chain_id, chain_rows in by_chain.items():
        cps = [c for c in read_checkpoints(layout.checkpoints(chain_id))[0] if verify_checkpoint(c, pub)]
        need = max(r[1] for r in chain_rows) + 1
        cover = [c for c in cps if c.size >= need]
        if not cover:
            raise ProofError(f"no signed checkpoint of chain {chain_id} covers seq {need - 1} yet; "
                             "wait for the next checkpoint (or run `tooltrail flush`) and retry")
        cp = max(cover, key=lambda c: c.size)
        checkpoints[chain_id] = cp.model_dump()
        events.extend(_chain_events(layout, chain_id, cp, chain_rows))
    return {
        "format": BUNDLE_FORMAT,
        "created_at": format_ts(datetime.now(UTC)),
        "public_key": base64.b64encode(public_raw(pub)).decode(),
        "checkpoints": checkpoints,
        "events": events,
        "meta": meta or {},
    }


def prove(layout: Layout, event_id: str) -> dict:
    rows = locate(layout, [event_id])
    if not rows:
        raise ProofError(f"event {event_id!r} is not in any sealed segment")
    return build_bundle(layout, rows, {"event_id": event_id})


@dataclass
class BundleCheck:
    ok: bool
    events: int
    problems: list[str]


def verify_bundle(bundle: dict, trusted_key: str | None = None) -> BundleCheck:
    problems: list[str] = []
    if bundle.get("format") != BUNDLE_FORMAT:
        return BundleCheck(False, 0, [f"not a {BUNDLE_FORMAT} bundle"])
    try:
        pub = public_key_from_b64(trusted_key) if trusted_key else public_key_from_b64(bundle["public_key"])
    except (ValueError, KeyError) as exc:
        return BundleCheck(False, 0, [f"public key unusable: {exc}"])
    cps: dict[str, Checkpoint] = {}
    for chain_id, raw in (bundle.get("checkpoints") or {}).items():
        try:
            cp = Checkpoint.model_validate(raw)
        except ValueError as exc:
            problems.append(f"checkpoint of {chain_id} malformed: {exc.__class__.__name__}")
            continue
        if cp.chain_id != chain_id or not verify_checkpoint(cp, pub):
            problems.append(f"checkpoint of {chain_id}: signature does not verify with key {key_id(pub)}")
            continue
        cps[chain_id] = cp
    events = bundle.get("events") or []
    for i, ev in enumerate(events):
        where = f"event {i} (chain {ev.get('chain_id')}, seq {ev.get('seq')})"
        try:
            data = ev["record"].encode()
            rec = orjson.loads(data)
            if canonical_bytes(rec) != data:
                problems.append(f"{where}: record is not in canonical form")
                continue
            if rec.get("seq") != ev["seq"] or rec.get("chain_id") != ev["chain_id"]:
                problems.append(f"{where}: record's own chain/seq differ from the proof's")
                continue
            leaf = leaf_hash(data)
            if link(ev["prev_hash"], leaf) != ev["hash"]:
                problems.append(f"{where}: record does not hash to its chain hash")
                continue
            cp = cps.get(ev["chain_id"])
            if cp is None:
                problems.append(f"{where}: no valid checkpoint for its chain")
                continue
            path = [bytes.fromhex(p) for p in ev["path"]]
            if ev["tree_size"] != cp.size or not verify_inclusion(leaf, ev["leaf_index"], cp.size, path,
                                                                   bytes.fromhex(cp.root)):
                problems.append(f"{where}: inclusion proof does not lead to the signed root")
        except (KeyError, TypeError, ValueError, orjson.JSONDecodeError, InvalidSignature) as exc:
            problems.append(f"{where}: malformed ({exc.__class__.__name__})")
    if not events:
        problems.append("bundle holds no events")
    return BundleCheck(not problems, len(events), problems)
