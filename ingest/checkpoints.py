"""The append-only log of signed checkpoints of one chain, and its optional export.

A checkpoint is signed every `checkpoint_every_events` events or `checkpoint_every_seconds`
seconds (checked whenever a segment seals), and always on close. Exporting each checkpoint
to a second location (a directory, or an http(s) URL that receives a POST) makes a rollback
of the whole data dir detectable: `tooltrail verify --checkpoints-from DIR`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from ingest.fsio import append_durable, read_lines, write_atomic
from ingest.layout import Layout
from ingest.merkle import CompactRange
from ingest.signing import Signer
from schemas.checkpoint import Checkpoint
from schemas.stored import format_ts
from tooltrail.logs import get_logger

log = get_logger("tooltrail.checkpoints")


def read_checkpoints(path: Path) -> tuple[list[Checkpoint], list[str]]:
    """Checkpoints in file order, and a list of lines that could not be parsed."""
    good: list[Checkpoint] = []
    bad: list[str] = []
    for i, line in enumerate(read_lines(path)):
        try:
            good.append(Checkpoint.model_validate_json(line))
        except ValueError:
            bad.append(f"{path.name}:{i + 1}")
    return good, bad


class CheckpointLog:
    def __init__(self, layout: Layout, chain_id: str, signer: Signer, *, export: str | None = None,
                 every_events: int = 10_000, every_seconds: float = 10.0) -> None:
        self.layout = layout
        self.chain_id = chain_id
        self.signer = signer
        self.export = export
        self.every_events = every_events
        self.every_seconds = every_seconds
        self.path = layout.checkpoints(chain_id)
        existing, _ = read_checkpoints(self.path)
        self.last: Checkpoint | None = existing[-1] if existing else None
        self._last_time = time.monotonic()

    def maybe_sign(self, size: int, frontier: CompactRange, head: str, *, force: bool = False) -> Checkpoint | None:
        last_size = self.last.size if self.last else 0
        if size <= last_size and not (size == 0 and self.last is None and force):
            return None
        due = force or size - last_size >= self.every_events or time.monotonic() - self._last_time >= self.every_seconds
        if not due:
            return None
        if frontier.size != size:
            raise ValueError("frontier does not match checkpoint size")
        if size == 0:
            return None
        cp = self.signer.sign(self.chain_id, size, frontier.root().hex(), head, format_ts(datetime.now(UTC)))
        line = cp.model_dump_json().encode() + b"\n"
        append_durable(self.path, line)
        self.last = cp
        self._last_time = time.monotonic()
        self._export(line)
        return cp

    def _export(self, line: bytes) -> None:
        if not self.export:
            return
        try:
            if self.export.startswith(("http://", "https://")):
                import httpx

                httpx.post(self.export, content=line, headers={"content-type": "application/json"}, timeout=5,
                           follow_redirects=False).raise_for_status()
            else:
                d = Path(self.export)
                d.mkdir(parents=True, exist_ok=True)
                append_durable(d / f"{self.chain_id}.jsonl", line)
                pub = d / "signing.pub"
                if not pub.exists():
                    write_atomic(pub, (self.signer.public_b64() + "\n").encode())
        except Exception as exc:  # export is a second copy: never block ingest on it
            log.warning("checkpoint_export_failed", chain_id=self.chain_id, error=str(exc)[:200])
