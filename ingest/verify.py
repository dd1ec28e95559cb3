"""`verify`: recompute every hash, link, Merkle root and signature, and name the first bad
position of each chain.

What it proves, per chain (seq 0 .. n-1):
- every live segment in the manifest exists and its rows form one contiguous seq range that
  links to the previous segment (deleted / truncated segment files, deleted rows);
- each row's `record` hashes to its `hash` given its `prev_hash`, and `prev_hash` equals the
  previous row's `hash` (edited records, inserted or swapped rows);
- every typed column equals the value inside `record` (an edit of any stored column);
- every checkpoint is signed by the trusted key (forgeries), no two checkpoints sign
  different roots for one size (forks), each signed root equals the recomputed Merkle root,
  and no checkpoint covers more events than are stored (a truncated tail).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from ingest.chain import CHAIN_DOMAIN, genesis_hash
from ingest.checkpoints import read_checkpoints
from ingest.fsio import write_atomic
from ingest.layout import Layout
from ingest.merkle import CompactRange
from ingest.segments import SegmentInfo, live_segments
from ingest.signing import load_public_key, verify_checkpoint
from schemas.checkpoint import Checkpoint
from schemas.stored import TYPED_COLUMNS, format_ts

_sha256 = hashlib.sha256
Progress = Callable[[int], None]


@dataclass
class Problem:
    kind: str
    detail: str
    seq: int | None = None
    file: str | None = None


@dataclass
class ChainReport:
    chain_id: str
    events: int = 0
    segments: int = 0
    checkpoints: int = 0
    signed_size: int = 0
    unsigned_tail: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad(self) -> Problem | None:
        with_seq = [p for p in self.problems if p.seq is not None]
        if with_seq:
            return min(with_seq, key=lambda p: p.seq)  # type: ignore[arg-type,return-value]
        return self.problems[0] if self.problems else None

    def add(self, kind: str, detail: str, seq: int | None = None, file: str | None = None) -> None:
        self.problems.append(Problem(kind, detail, seq, file))


@dataclass
class VerifyReport:
    ok: bool
    chains: list[ChainReport]
    warnings: list[str]
    events: int
    seconds: float
    verified_at: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for c, cd in zip(self.chains, d["chains"], strict=True):
            fb = c.first_bad
            cd["ok"] = c.ok
            cd["first_bad_seq"] = fb.seq if fb else None
            cd["first_bad_file"] = fb.file if fb else None
        return d


def _mismatch_sql(path: str) -> str:
    conds = " OR ".join(f'("{name}" IS DISTINCT FROM {expr})' for name, _, expr in TYPED_COLUMNS)
    return f"SELECT min(seq) FROM read_parquet('{path}') WHERE {conds}"


def _mismatch_column(con: duckdb.DuckDBPyConnection, path: str, seq: int) -> str:
    cols = ", ".join(f'("{name}" IS DISTINCT FROM {expr}) AS "{name}"' for name, _, expr in TYPED_COLUMNS)
    row = con.execute(f"SELECT {cols} FROM read_parquet('{path}') WHERE seq = ? LIMIT 1", [seq]).fetchone()
    if row is None:
        return "seq"
    return ", ".join(name for (name, _, _), bad in zip(TYPED_COLUMNS, row, strict=True) if bad) or "?"


def _check_segment_rows(table: pa.Table, info: SegmentInfo, expect_seq: int, head: str, cr: CompactRange,
                        cp_sizes: dict[int, list[Checkpoint]], rep: ChainReport) -> tuple[int, str, bool]:
    """Walk one segment's rows in seq order. Returns (next seq, head hash, ok)."""
    table = table.sort_by("seq")
    seqs = table.column("seq").to_pylist()
    prevs = table.column("prev_hash").to_pylist()
    hashes = table.column("hash").to_pylist()
    records = table.column("record").cast(pa.binary()).to_pylist()
    for seq, prev, h, data in zip(seqs, prevs, hashes, records, strict=True):
        if seq != expect_seq:
            kind = "deleted_row" if seq is not None and seq > expect_seq else "inserted_row"
            rep.add(kind, f"expected seq {expect_seq}, found {seq}", expect_seq, info.path)
            return expect_seq, head, False
        if prev != head:
            rep.add("broken_link", "prev_hash does not match the previous event's hash", seq, info.path)
            return expect_seq, head, False
        leaf = _sha256(b"\x00" + data).digest()
        try:
            linked = _sha256(CHAIN_DOMAIN + bytes.fromhex(prev) + leaf).hexdigest()
        except ValueError:
            linked = ""
        if linked != h:
            rep.add("hash_mismatch", "record does not hash to the stored hash (edited or swapped)", seq, info.path)
            return expect_seq, head, False
        cr.append(leaf)
        for cp in cp_sizes.get(cr.size, ()):
            if cp.root != cr.root().hex():
                rep.add("checkpoint_root_mismatch", f"signed root for size {cp.size} differs from the stored events",
                        seq, info.path)
        expect_seq, head = seq + 1, h
    return expect_seq, head, True


def verify_chain(layout: Layout, chain_id: str, pubkey: Any, *, extra_checkpoints: list[Checkpoint] | None = None,
                 progress: Progress | None = None) -> ChainReport:
    rep = ChainReport(chain_id)
    cps, bad_lines = read_checkpoints(layout.checkpoints(chain_id))
    for b in bad_lines:
        rep.add("checkpoint_unreadable", f"checkpoint line {b} cannot be parsed")
    all_cps = cps + [c for c in (extra_checkpoints or []) if c.chain_id == chain_id and c not in cps]
    valid: list[Checkpoint] = []
    for cp in all_cps:
        if cp.chain_id != chain_id:
            rep.add("checkpoint_forged", f"checkpoint for chain {cp.chain_id} in the log of {chain_id}")
        elif not verify_checkpoint(cp, pubkey):
            rep.add("checkpoint_forged", f"checkpoint for size {cp.size} has an invalid signature")
        else:
            valid.append(cp)
    by_size: dict[int, list[Checkpoint]] = {}
    for cp in valid:
        by_size.setdefault(cp.size, []).append(cp)
    for size, group in by_size.items():
        if len({c.root for c in group}) > 1:
            rep.add("fork", f"two different roots signed for size {size}", size - 1)
    rep.checkpoints = len(valid)
    rep.signed_size = max((c.size for c in valid), default=0)

    segs = live_segments(layout, chain_id)
    rep.segments = len(segs)
    expect_seq, head = 0, genesis_hash(chain_id)
    cr = CompactRange()
    con = duckdb.connect()
    healthy = True
    for info in segs:
        path = layout.lake / info.path
        if info.first_seq != expect_seq:
            kind = "missing_segment" if info.first_seq > expect_seq else "overlapping_segment"
            rep.add(kind, f"segment starts at seq {info.first_seq}, expected {expect_seq}", expect_seq, info.path)
            healthy = False
            break
        if not path.exists():
            rep.add("missing_segment", "segment file listed in the manifest is missing", info.first_seq, info.path)
            healthy = False
            break
        try:
            table = pq.read_table(path, columns=["seq", "prev_hash", "hash", "record"])
        except (OSError, pa.ArrowException) as exc:
            rep.add("unreadable_segment", f"cannot read segment: {exc}", info.first_seq, info.path)
            healthy = False
            break
        before = expect_seq
        expect_seq, head, ok = _check_segment_rows(table, info, expect_seq, head, cr, by_size, rep)
        if ok and expect_seq != info.last_seq + 1:
            rep.add("truncated_segment", f"segment ends at seq {expect_seq - 1}, manifest says {info.last_seq}",
                    expect_seq, info.path)
            ok = False
        if ok:
            bad = con.execute(_mismatch_sql(str(path))).fetchone()[0]
            if bad is not None:
                rep.add("column_mismatch", f"column(s) {_mismatch_column(con, str(path), bad)} differ from the "
                        "hashed record", bad, info.path)
                ok = False
        if progress:
            progress(expect_seq - before)
        if not ok:
            healthy = False
            break
    rep.events = expect_seq
    if healthy:
        for cp in valid:
            if cp.size > expect_seq:
                rep.add("truncated_tail", f"a signed checkpoint covers {cp.size} events but only {expect_seq} "
                        "are stored", expect_seq)
                break
        for cp in valid:
            if cp.size <= expect_seq and cp.size == expect_seq and cp.head != head:
                rep.add("checkpoint_head_mismatch", "signed head hash differs from the stored chain", cp.size - 1)
    rep.unsigned_tail = max(0, rep.events - rep.signed_size)
    return rep


def _orphans(layout: Layout, live: set[str]) -> list[str]:
    if not layout.events_dir.exists():
        return []
    return sorted(str(p.relative_to(layout.lake)) for p in layout.events_dir.rglob("*.parquet")
                  if str(p.relative_to(layout.lake)) not in live)


def verify(layout: Layout, *, trusted_key: str | None = None, checkpoints_from: str | None = None,
           progress: Progress | None = None, save: bool = True) -> VerifyReport:
    t0 = time.perf_counter()
    warnings: list[str] = []
    pubkey = load_public_key(layout.keys, trusted_key)
    extra: dict[str, list[Checkpoint]] = {}
    if checkpoints_from:
        for p in sorted(Path(checkpoints_from).glob("*.jsonl")):
            extra[p.stem] = read_checkpoints(p)[0]
    chain_ids = sorted(set(layout.chain_ids()) | set(extra)
                       | {p.stem for p in layout.checkpoints_dir.glob("*.jsonl")})
    reports = [verify_chain(layout, c, pubkey, extra_checkpoints=extra.get(c), progress=progress) for c in chain_ids]
    live = {s.path for c in chain_ids for s in live_segments(layout, c)}
    for orphan in _orphans(layout, live):
        warnings.append(f"segment file not in any manifest (ignored by queries): {orphan}")
    report = VerifyReport(
        ok=all(r.ok for r in reports), chains=reports, warnings=warnings,
        events=sum(r.events for r in reports), seconds=round(time.perf_counter() - t0, 3),
        verified_at=format_ts(datetime.now(UTC)),
    )
    if save:
        save_report(layout, report)
    return report


def report_path(layout: Layout) -> Path:
    return layout.lake / "verify" / "last.json"


def save_report(layout: Layout, report: VerifyReport) -> None:
    p = report_path(layout)
    p.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(p, orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2))


def last_report(layout: Layout) -> dict[str, Any] | None:
    try:
        return orjson.loads(report_path(layout).read_bytes())
    except FileNotFoundError:
        return None
