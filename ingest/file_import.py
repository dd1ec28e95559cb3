"""File import: JSONL/NDJSON into the store, in one process or in several in parallel.

With `workers > 1` each worker process owns its own chain (`<chain>-0`, `<chain>-1`, ...;
one writer per chain) and the reading process routes every line by a hash of its
`event_id` (or of the line when it has none), so a given event always reaches the same
worker and is deduplicated there. Workers also load the event ids of their sibling chains
at start, so re-running an interrupted import with a different worker count stores nothing
twice. Segments are written on a sealing thread while the next batch is validated; the
totals are reported once every segment is durable. Then (unless `compact=False`) each writer
merges the small segments of its chain into large ones, in parallel across workers: a session
lookup then reads a few large sorted segments instead of one small segment per batch.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ingest.adapters.expand import expand_records
from tooltrail.logs import get_logger

log = get_logger("tooltrail.import")

BATCH = 20_000
_EVENT_ID = re.compile(rb'"event_id"\s*:\s*"([^"\\]{1,128})"')


@dataclass
class ImportTotals:
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    skipped: int = 0  # gateway records that are not tool calls (e.g. tools/list), --format only
    chains: list[str] = field(default_factory=list)
    compacted: int = 0  # small segments merged after the import
    phase: str = "import"  # "compact" once every event is stored and the chains are being compacted

    def add(self, stored: int, duplicates: int, quarantined: int, skipped: int = 0) -> None:
        self.stored += stored
        self.duplicates += duplicates
        self.quarantined += quarantined
        self.skipped += skipped

    def as_dict(self) -> dict[str, int]:
        return {"stored": self.stored, "duplicates": self.duplicates, "quarantined": self.quarantined,
                "skipped": self.skipped, "compacted_segments": self.compacted}


def submit_lines(ing: Any, lines: list[bytes], origins: list[str], source: str, adapter: Any) -> tuple[int, int, int, int]:
    """Submit one batch of input lines; with a gateway adapter, each line may hold several
    records (expanded here, as the HTTP collector does). Returns (stored, duplicates,
    quarantined, skipped)."""
    skipped, mapper = 0, None
    items: list[Any] = lines
    if adapter is not None:
        items, where, skipped, mapper = expand_records(lines, adapter)
        origins = [origins[i] + (f"#{k}" if k is not None else "") for i, k in where]
    res = ing.submit(items, source=source, origins=origins, mapper=mapper)
    return res.stored, res.duplicates, len({r.index for r in res.rejected}), skipped


def read_batches(fh: IO[bytes], name: str, batch: int = BATCH) -> Iterator[tuple[list[bytes], list[str], int]]:
    """(lines, origins "name:lineno", bytes consumed) per batch; blank lines skipped."""
    lines: list[bytes] = []
    origins: list[str] = []
    nbytes = 0
    for lineno, line in enumerate(fh, 1):
        nbytes += len(line)
        line = line.strip()
        if not line:
            continue
        lines.append(line)
        origins.append(f"{name}:{lineno}")
        if len(lines) >= batch:
            yield lines, origins, nbytes
            lines, origins, nbytes = [], [], 0
    if lines or nbytes:
        yield lines, origins, nbytes


def route(line: bytes, workers: int) -> int:
    m = _EVENT_ID.search(line)
    return zlib.crc32(m.group(1) if m else line) % workers


def chain_names(chain: str, workers: int) -> list[str]:
    return [chain] if workers <= 1 else [f"{chain}-{k}" for k in range(workers)]


def _sibling_chains(layout: Any, chain: str) -> list[str]:
    return [c for c in layout.chain_ids() if c == chain or re.fullmatch(re.escape(chain) + r"-\d+", c)]


def _worker(config: Any, chain_id: str, siblings: list[str], source: str, fmt: str, compact: bool,
            inbox: Any, outbox: Any) -> None:
    from ingest.pipeline import Ingestor
    from ingest.runtime import tune_gc

    tune_gc()
    try:
        adapter = _adapter(fmt)
        ing = Ingestor.open(config, chain_id, direct=True, pipelined=True, dedupe_with=siblings)
    except Exception as exc:
        outbox.put(("error", f"{chain_id}: {exc}"))
        return
    with ing:
        outbox.put(("ready", chain_id))
        while True:
            item = inbox.get()
            if item is None:
                break
            lines, origins = item
            outbox.put(("done", submit_lines(ing, lines, origins, source, adapter)))
        merged = compact_quietly(ing) if compact else 0
    outbox.put(("closed", merged))


def _adapter(fmt: str) -> Any:
    if fmt == "v1":
        return None
    from ingest.adapters import get_adapter

    return get_adapter(fmt)


def import_files(config: Any, sources: Iterable[tuple[IO[bytes], str]], *, source: str, chain: str = "import",
                 fmt: str = "v1", workers: int = 1, compact: bool = True,
                 on_progress: Callable[[int, ImportTotals], None] | None = None) -> ImportTotals:
    """Import (file handle, display name) pairs. `on_progress(bytes_consumed, totals)` after each
    batch, and once with `totals.phase == "compact"` when the compaction starts."""
    totals = ImportTotals(chains=chain_names(chain, workers))
    siblings = sorted(set(_sibling_chains(config.layout, chain)) | set(totals.chains))
    if workers <= 1:
        from ingest.pipeline import Ingestor

        adapter = _adapter(fmt)
        with Ingestor.open(config, chain, direct=True, pipelined=True, dedupe_with=siblings) as ing:
            for fh, name in sources:
                for lines, origins, nbytes in read_batches(fh, name):
                    totals.add(*submit_lines(ing, lines, origins, source, adapter))
                    if on_progress:
                        on_progress(nbytes, totals)
            if compact:
                _compacting(totals, on_progress)
                totals.compacted = compact_quietly(ing)
        return totals
    return _import_parallel(config, sources, source=source, fmt=fmt, totals=totals, siblings=siblings,
                            compact=compact, on_progress=on_progress)


def compact_quietly(ing: Any) -> int:
    """Compact the chain after an import; a failure (disk full, ...) is reported, not fatal:
    every event is already stored, and `tooltrail compact` can do it later."""
    ing.flush()  # the last segments first; their failure is the import's, not a compaction's
    try:
        return ing.compact()
    except OSError as exc:
        log.warning("import_compaction_failed", chain_id=ing.chain_id, error=str(exc)[:300],
                    note="every event is stored; run `tooltrail compact` later")
        return 0


def _compacting(totals: ImportTotals, on_progress: Callable[[int, ImportTotals], None] | None) -> None:
    totals.phase = "compact"
    if on_progress:
        on_progress(0, totals)


def _import_parallel(config: Any, sources: Iterable[tuple[IO[bytes], str]], *, source: str, fmt: str,
                     totals: ImportTotals, siblings: list[str], compact: bool,
                     on_progress: Callable[[int, ImportTotals], None] | None) -> ImportTotals:
    ctx = mp.get_context("spawn")
    n = len(totals.chains)
    inboxes = [ctx.Queue(maxsize=3) for _ in range(n)]
    outbox = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(config, c, siblings, source, fmt, compact, inboxes[k], outbox),
                         daemon=True) for k, c in enumerate(totals.chains)]
    for p in procs:
        p.start()
    pending = 0
    stopped = False

    def drain(block: bool) -> None:
        nonlocal pending
        while pending and (block or not outbox.empty()):
            kind, payload = outbox.get(timeout=600)
            if kind == "done":
                totals.add(*payload)
                pending -= 1
            elif kind == "error":
                raise RuntimeError(payload)

    try:
        ready = 0
        while ready < n:  # a worker that cannot open its chain fails fast here
            kind, payload = outbox.get(timeout=120)
            if kind == "ready":
                ready += 1
            elif kind == "error":
                raise RuntimeError(payload)
        for fh, name in sources:
            for lines, origins, nbytes in read_batches(fh, name, BATCH * n):
                parts: list[tuple[list[bytes], list[str]]] = [([], []) for _ in range(n)]
                for line, origin in zip(lines, origins, strict=True):
                    k = route(line, n)
                    parts[k][0].append(line)
                    parts[k][1].append(origin)
                for k, part in enumerate(parts):
                    if part[0]:
                        inboxes[k].put(part)
                        pending += 1
                drain(block=False)
                if on_progress:
                    on_progress(nbytes, totals)
        drain(block=True)
        if compact:
            _compacting(totals, on_progress)
        stopped = True
        for q in inboxes:
            q.put(None)
        _await_closed(procs, outbox, totals)
    finally:
        if not stopped:
            for q in inboxes:
                q.put(None)
        for p in procs:
            p.join(timeout=60)
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad:
        raise RuntimeError(f"an import worker failed (exit codes {bad}); re-run the import: it is idempotent")
    return totals


def _await_closed(procs: list[Any], outbox: Any, totals: ImportTotals) -> None:
    """Wait, however long the last segments and the compaction take, until every worker has
    closed its chain; a worker that dies instead ends the wait (and fails the import)."""
    closed = 0
    while closed < len(procs):
        try:
            kind, payload = outbox.get(timeout=1.0)
        except queue.Empty:
            if any(p.exitcode not in (None, 0) for p in procs):
                return
            continue
        if kind == "closed":
            closed += 1
            totals.compacted += payload
        elif kind == "error":
            raise RuntimeError(payload)


def open_sources(paths: list[str], stdin: IO[bytes]) -> Iterator[tuple[IO[bytes], str]]:
    for p in paths:
        if p == "-":
            yield stdin, "stdin"
        else:
            with open(p, "rb") as fh:
                yield fh, Path(p).name
