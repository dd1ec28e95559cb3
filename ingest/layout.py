"""Where everything lives under the data dir. The one place that knows file paths.

    <data>/keys/        secrets (0700): signing key, redaction HMAC key, API key hashes
    <data>/wal/         write-ahead logs, one per chain (not queryable)
    <data>/run/         lock files: one owning process per chain
    <data>/lake/        everything the read-only query layer may open:
        events/date=YYYY-MM-DD/<chain>-<first>-<last>.parquet   immutable segments
        manifests/<chain>.jsonl       live segments of each chain (append-only)
        checkpoints/<chain>.jsonl     signed checkpoints (append-only)
        quarantine/date=YYYY-MM-DD/*.jsonl   rejected input, redacted, with reasons
        alerts/                       alert store (owned by the detector process)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

CHAIN_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def check_chain_id(chain_id: str) -> str:
    if not CHAIN_ID_RE.match(chain_id):
        raise ValueError(f"invalid chain id {chain_id!r}: use 1-128 of [A-Za-z0-9._-]")
    return chain_id


@dataclass(frozen=True)
class Layout:
    root: Path

    @classmethod
    def at(cls, root: str | os.PathLike[str]) -> Layout:
        return cls(Path(root).resolve())

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def wal_dir(self) -> Path:
        return self.root / "wal"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def lake(self) -> Path:
        return self.root / "lake"

    @property
    def events_dir(self) -> Path:
        return self.lake / "events"

    @property
    def manifests_dir(self) -> Path:
        return self.lake / "manifests"

    @property
    def checkpoints_dir(self) -> Path:
        return self.lake / "checkpoints"

    @property
    def quarantine_dir(self) -> Path:
        return self.lake / "quarantine"

    @property
    def alerts_dir(self) -> Path:
        return self.lake / "alerts"

    @property
    def state_dir(self) -> Path:
        """Private mutable state of long-running services (detector baselines, outbox)."""
        return self.root / "state"

    def wal(self, chain_id: str) -> Path:
        return self.wal_dir / f"{check_chain_id(chain_id)}.wal"

    def manifest(self, chain_id: str) -> Path:
        return self.manifests_dir / f"{check_chain_id(chain_id)}.jsonl"

    def checkpoints(self, chain_id: str) -> Path:
        return self.checkpoints_dir / f"{check_chain_id(chain_id)}.jsonl"

    def lock(self, chain_id: str) -> Path:
        return self.run_dir / f"{check_chain_id(chain_id)}.lock"

    def segment(self, chain_id: str, date: str, first: int, last: int) -> Path:
        return self.events_dir / f"date={date}" / f"{check_chain_id(chain_id)}-{first:012d}-{last:012d}.parquet"

    def ensure(self) -> Layout:
        for d in (self.root, self.wal_dir, self.run_dir, self.lake, self.events_dir, self.manifests_dir,
                  self.checkpoints_dir, self.quarantine_dir, self.alerts_dir, self.state_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.keys.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.keys, 0o700)
        return self

    def chain_ids(self) -> list[str]:
        """Every chain that has a manifest or a WAL."""
        ids = {p.stem for p in self.manifests_dir.glob("*.jsonl")} if self.manifests_dir.exists() else set()
        if self.wal_dir.exists():
            ids |= {p.stem for p in self.wal_dir.glob("*.wal")}
        return sorted(ids)
