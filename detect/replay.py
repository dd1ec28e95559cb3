"""Fast replay of sealed segments for backtests: the records of one principal partition in
exactly the order `follow.merged` gives (chains merged by (received_at, chain_id, seq)),
with watermark ticks standing in for the other partitions' records.

Per segment only the needed columns are read (`seq`, `received_at`, `ts`, `principal`,
`session`, `hash`, `record`), rows are put in seq order, and only this partition's `record`
strings are parsed. Chains are merged in vectorised rounds: every row up to the smallest
"last key" of the chains' current segments can be emitted, sorted with numpy.

Ticks: the engine sweeps state whenever the event-time watermark enters a new
SWEEP_EVERY_S bucket. A partition does not see the other partitions' records, so it gets
the watermark they produce as floats (DetectionEngine._run treats a float as a tick): the
ts of every record that triggers a sweep in the full stream, and the running maximum before
each own record that follows other records. Sweeps then happen at the same points with the
same values as in a one-process replay. Event time of a row comes from the typed `ts`
column, computed like the engine computes it from the record's `ts` string (same float).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detect.engine import SWEEP_EVERY_S
from schemas.stored import load_record

COLUMNS = ["seq", "received_at", "ts", "principal", "session", "hash", "record"]


class ReplayOrderError(RuntimeError):
    """A chain's received_at is not monotonic in seq order: the vectorised merge would not
    reproduce follow.merged; callers fall back to it."""


def partition_of(principal: str | None, n: int) -> int:
    """Stable partition of a principal (the same in every process)."""
    return zlib.crc32((principal or "").encode()) % n if n > 1 else 0


def epoch_seconds(us: np.ndarray) -> np.ndarray:
    """Epoch floats from integer microseconds, bit-identical to timeutil.ts_epoch on the
    canonical string (whole seconds + microseconds * 1e-6)."""
    return (us // 1_000_000).astype(np.float64) + (us % 1_000_000).astype(np.float64) * 1e-6


def segment_paths(layout: Any, chain_id: str) -> list[Any]:
    """The chain's live segments in seq order (as ingest.segments.iter_records reads them)."""
    from ingest.segments import live_segments

    return [layout.lake / info.path for info in live_segments(layout, chain_id)]


@dataclass
class _Block:
    """One segment's rows in range, in seq order."""

    recv: np.ndarray  # received_at, int64 microseconds
    seq: np.ndarray
    ts: np.ndarray  # float64 epoch seconds
    own: np.ndarray  # bool: row belongs to this partition
    own_before: np.ndarray  # own rows before each row (= rank of an own row in seq order)
    # this partition's records in seq order, as slices of the `record` column's buffers (one bytes copy
    # per chunk: load_record takes bytes, not memoryviews):
    # rank r -> bufs[chunk[r]][start[r]:end[r]], the canonical JSON
    bufs: list[bytes]
    chunk: list[int]
    start: list[int]
    end: list[int]
    hashes: list[str]
    sessions: list[str] = field(default_factory=list)
    pos: int = 0

    def __len__(self) -> int:
        return len(self.seq)


def _read_block(path: Any, lo: float | None, hi: float | None, n_parts: int, part: int,
                threads: bool) -> _Block:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    t = pq.read_table(path, columns=COLUMNS, use_threads=threads)
    seq_f = t["seq"].to_numpy()
    ts_f = epoch_seconds(t["ts"].cast(pa.int64()).to_numpy())
    keep = np.ones(len(seq_f), dtype=bool)  # file order
    if lo is not None:
        keep &= ts_f >= lo
    if hi is not None:
        keep &= ts_f < hi
    if n_parts > 1:
        enc = pc.dictionary_encode(t["principal"].combine_chunks())
        parts = np.array([partition_of(p, n_parts) for p in enc.dictionary.to_pylist()] + [partition_of(None, n_parts)])
        keep_own = keep & (parts[enc.indices.fill_null(len(parts) - 1).to_numpy(zero_copy_only=False)] == part)
    else:
        keep_own = keep
    # rows are stored sorted by session: put them in seq order with numpy
    order = np.argsort(seq_f[keep], kind="stable")
    idx = np.flatnonzero(keep)[order]
    seq, ts = seq_f[idx], ts_f[idx]
    recv = t["received_at"].cast(pa.int64()).to_numpy()[idx]
    own = keep_own[idx]
    if len(recv) > 1 and not bool((np.diff(recv) >= 0).all()):
        raise ReplayOrderError(f"{path}: received_at decreases in seq order")
    rows = idx[own]  # file positions of this partition's rows, in seq order
    col = t["record"]
    otype = np.int64 if pa.types.is_large_string(col.type) else np.int32
    starts, ends, chunk_ids, bufs = [], [], [], []
    for k, c in enumerate(col.chunks):
        offs = np.frombuffer(c.buffers()[1], dtype=otype)[c.offset:c.offset + len(c) + 1]
        starts.append(offs[:-1])
        ends.append(offs[1:])
        chunk_ids.append(np.full(len(c), k))
        bufs.append(c.buffers()[2].to_pybytes() if c.buffers()[2] is not None else b"")
    cat = (lambda xs: np.concatenate(xs)[rows].tolist()) if starts else (lambda xs: [])
    hashes = t["hash"].take(pa.array(rows)).to_pylist()
    sessions = pc.unique(t["session"].take(pa.array(rows))).to_pylist() if n_parts > 1 else []
    own_before = np.concatenate(([0], np.cumsum(own)))
    return _Block(recv, seq, ts, own, own_before, bufs, cat(chunk_ids), cat(starts), cat(ends), hashes, sessions)


class Replay:
    """Iterate `chunks()`: lists of record dicts (this partition's) and float ticks, in the
    merged order, for DetectionEngine.run_batch. A chunk holds this partition's part of one
    batch of `chunk` consecutive merged rows (`batch` is its number while it is processed),
    so alert stores settle at the same points as a one-process replay in batches of `chunk`.
    `sessions` collects the sessions seen (to check that no session spans partitions);
    `triggers` the (received_at, chain_id, seq, ts, batch) of every sweep-triggering row
    when `keep_triggers` is set."""

    def __init__(self, layout: Any, chains: list[str], *, since: float | None = None, until: float | None = None,
                 n_parts: int = 1, part: int = 0, chunk: int = 20_000, threads: bool = False,
                 keep_triggers: bool = False) -> None:
        self.layout = layout
        self.chains = sorted(chains)  # rank = chain_id order, as in the merge key
        self.since, self.until = since, until
        self.n_parts, self.part = n_parts, part
        self.chunk = chunk
        self.threads = threads
        self.keep_triggers = keep_triggers
        self.sessions: set[str] = set()
        self.triggers: list[tuple[str, str, int, float, int]] = []
        self.rows = 0  # rows merged (all partitions)
        self.events = 0  # own records yielded
        self.batch = 0
        self._out: list[Any] = []
        self._wm = float("-inf")  # running max of ts over all merged rows
        self._bucket = float("-inf")
        self._gap = False  # other partitions' rows since the last own record

    def _blocks(self, chain: str) -> Iterator[_Block]:
        last = None
        for p in segment_paths(self.layout, chain):
            b = _read_block(p, self.since, self.until, self.n_parts, self.part, self.threads)
            if not len(b):
                continue
            if last is not None and b.recv[0] < last:
                raise ReplayOrderError(f"{p}: received_at decreases across segments of {chain}")
            last = b.recv[-1]
            self.sessions.update(b.sessions)
            yield b

    def chunks(self) -> Iterator[list[Any]]:
        its = [self._blocks(c) for c in self.chains]
        cur: list[_Block | None] = [next(it, None) for it in its]
        while True:
            live = [i for i, b in enumerate(cur) if b is not None]
            if not live:
                break
            # every remaining row with key <= the smallest last key of the current blocks
            bound = min(live, key=lambda i: (cur[i].recv[-1], i, cur[i].seq[-1]))  # type: ignore[union-attr]
            b_recv = cur[bound].recv[-1]  # type: ignore[union-attr]
            takes: list[tuple[int, int, int]] = []
            for i in live:
                b = cur[i]
                assert b is not None
                if i == bound:
                    end = len(b)
                else:
                    end = b.pos + int(np.searchsorted(b.recv[b.pos:], b_recv, side="right" if i < bound else "left"))
                if end > b.pos:
                    takes.append((i, b.pos, end))
            yield from self._round(cur, takes)
            for i, _, end in takes:
                b = cur[i]
                assert b is not None
                b.pos = end
            for i in live:
                b = cur[i]
                if b is not None and b.pos >= len(b):
                    cur[i] = next(its[i], None)
        if self._out:
            yield self._out

    def _round(self, cur: list[_Block | None], takes: list[tuple[int, int, int]]) -> Iterator[list[Any]]:
        blocks = [cur[i] for i, _, _ in takes]
        recv = np.concatenate([b.recv[s:e] for b, (_, s, e) in zip(blocks, takes, strict=True)])  # type: ignore[union-attr]
        seq = np.concatenate([b.seq[s:e] for b, (_, s, e) in zip(blocks, takes, strict=True)])  # type: ignore[union-attr]
        ts = np.concatenate([b.ts[s:e] for b, (_, s, e) in zip(blocks, takes, strict=True)])  # type: ignore[union-attr]
        own = np.concatenate([b.own[s:e] for b, (_, s, e) in zip(blocks, takes, strict=True)])  # type: ignore[union-attr]
        src = np.concatenate([np.full(e - s, k, dtype=np.int64) for k, (_, s, e) in enumerate(takes)])
        order = np.lexsort((seq, src, recv))  # takes are in chain rank order, so src ranks chains
        recv, seq, ts, own, src = recv[order], seq[order], ts[order], own[order], src[order]
        n = len(ts)
        base, self.rows = self.rows, self.rows + n
        # sweep triggers: rows whose ts moves the running max into a new bucket
        cm = np.maximum.accumulate(np.concatenate(([self._wm], ts)))
        bucket = np.floor_divide(cm[1:], SWEEP_EVERY_S)
        trig = bucket > np.concatenate(([self._bucket], bucket[:-1]))
        prev_cm = cm[:-1]  # running max before each row
        prev_own = np.concatenate(([not self._gap], own[:-1]))
        self._wm = float(cm[-1])
        self._bucket = float(bucket[-1])
        if self.keep_triggers:
            for i in np.flatnonzero(trig).tolist():
                r = str(np.datetime64(int(recv[i]), "us")) + "Z"
                self.triggers.append((r, self.chains[takes[src[i]][0]], int(seq[i]), float(ts[i]), (base + i) // self.chunk))
        self._gap = not bool(own[-1])
        todo = np.arange(n) if self.n_parts == 1 else np.flatnonzero(own | trig)
        nxt = [int(b.own_before[s]) for b, (_, s, _) in zip(blocks, takes, strict=True)]  # type: ignore[union-attr]
        loads = load_record
        own_l, src_l, ts_l = own[todo].tolist(), src[todo].tolist(), ts[todo].tolist()
        prev_cm_l, prev_own_l = prev_cm[todo].tolist(), prev_own[todo].tolist()
        batch_l = ((todo + base) // self.chunk).tolist()
        out = self._out
        for is_own, s, t, m, p_own, bt in zip(own_l, src_l, ts_l, prev_cm_l, prev_own_l, batch_l, strict=True):
            if bt != self.batch:
                if out:
                    yield out
                    out = self._out = []
                self.batch = bt
            if not is_own:
                out.append(t)  # a sweep-triggering row of another partition
                continue
            if not p_own:
                out.append(m)  # the watermark the other partitions' rows left
            b = blocks[s]
            j = nxt[s]
            nxt[s] = j + 1
            d = loads(b.bufs[b.chunk[j]][b.start[j]:b.end[j]])  # type: ignore[union-attr]
            d["hash"] = b.hashes[j]  # type: ignore[union-attr]
            out.append(d)
            self.events += 1
