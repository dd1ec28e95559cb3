"""Write-ahead log with group commit.

One directory per chain; files named by the first seq they may hold. Each line is
`<hash> <prev_hash> <canonical record>\n` (canonical JSON never holds a raw newline).
Writers append without syncing; `sync(pos)` makes everything up to `pos` durable, and one
fsync serves every caller waiting at that moment (group commit). When a segment seals,
the log rotates to a new file and the sealed file is deleted after the segment is durable.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from ingest.fsio import fsync_dir
from ingest.segments import StoredRow


class WalError(OSError):
    """The log could not be written or synced: nothing after the failure is acknowledged."""


class WriteAheadLog:
    def __init__(self, directory: Path, durable_seq: int = -1) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = None
        self.current: Path | None = None
        self._written = 0  # bytes handed to the kernel, all files together
        self._durable = 0
        self._written_seq = durable_seq  # last seq handed to the kernel
        self.durable_seq = durable_seq  # last seq known to be on stable storage
        self._sync_lock = threading.Lock()
        self.failed: BaseException | None = None

    @property
    def position(self) -> int:
        return self._written

    def files(self) -> list[Path]:
        return sorted(self.dir.glob("*.wal"), key=lambda p: int(p.stem))

    def open_new(self, first_seq: int) -> Path:
        """Start a new log file (rotation). The previous file stays until `drop`."""
        path = self.dir / f"{first_seq:012d}.wal"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        fsync_dir(self.dir)
        with self._sync_lock:
            old = self._fd
            self._fd, self.current = fd, path
            if old is not None:
                os.fsync(old)  # everything in the old file is durable before we rotate away
                os.close(old)
            self._durable, self.durable_seq = self._written, self._written_seq
        return path

    def reset(self, rows: list[StoredRow], next_seq: int) -> None:
        """Recover from a failed write/fsync: write `rows` (every unsealed row) into a fresh
        file, fsync it, and only then forget the failure and the old files."""
        old_files = self.files()
        old_fd = self._fd
        path = self.dir / f"{next_seq:012d}.wal.new"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            buf = self._encode(rows)
            view = memoryview(buf)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        final = self.dir / f"{(rows[0].seq if rows else next_seq):012d}.wal"
        for p in old_files:
            if p != final:
                p.unlink(missing_ok=True)
        os.replace(path, final)
        fsync_dir(self.dir)
        with self._sync_lock:
            self._fd, self.current = fd, final
            self._written += len(buf)
            self._durable = self._written
            if rows:
                self._written_seq = max(self._written_seq, rows[-1].seq)
            self.durable_seq = self._written_seq
            self.failed = None
        if old_fd is not None:
            with contextlib.suppress(OSError):
                os.close(old_fd)

    @staticmethod
    def _encode(rows: list[StoredRow]) -> bytes:
        return b"".join(f"{r.hash} {r.prev_hash} ".encode() + r.data + b"\n" for r in rows)

    def append(self, rows: list[StoredRow], last_seq: int) -> int:
        """Write rows (no fsync). Returns the position to pass to `sync`."""
        if self.failed is not None:
            raise WalError(f"write-ahead log unavailable: {self.failed}")
        buf = self._encode(rows)
        try:
            n = os.write(self._fd, buf)  # type: ignore[arg-type]
            while n < len(buf):
                n += os.write(self._fd, buf[n:])  # type: ignore[arg-type]
        except OSError as exc:
            self._fail(exc)
            raise WalError(f"write-ahead log write failed: {exc.strerror or exc}") from exc
        self._written += len(buf)
        self._written_seq = last_seq
        return self._written

    def sync(self, pos: int) -> None:
        """Block until every byte up to `pos` is on stable storage."""
        if self._durable >= pos:
            return
        with self._sync_lock:
            if self._durable >= pos:
                return
            if self.failed is not None:
                raise WalError(f"write-ahead log unavailable: {self.failed}")
            target, target_seq = self._written, self._written_seq
            try:
                os.fsync(self._fd)  # type: ignore[arg-type]
            except OSError as exc:
                self._fail(exc)
                raise WalError(f"write-ahead log fsync failed: {exc.strerror or exc}") from exc
            self._durable, self.durable_seq = target, target_seq

    def _fail(self, exc: BaseException) -> None:
        # After a failed write or fsync the file's state is unknown (fsync errors are not
        # retryable on Linux): refuse everything until the owner reopens the log.
        self.failed = exc

    def drop(self, paths: list[Path]) -> None:
        for p in paths:
            p.unlink(missing_ok=True)
        fsync_dir(self.dir)

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None

    @staticmethod
    def read(path: Path) -> list[tuple[str, str, bytes]]:
        """Complete entries of one log file; a torn tail (crash mid-write) is ignored."""
        data = path.read_bytes()
        out = []
        for line in data.split(b"\n")[:-1]:
            if not line:
                continue
            h, prev, rec = line.split(b" ", 2)
            out.append((h.decode(), prev.decode(), rec))
        return out
