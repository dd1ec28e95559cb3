"""Signed checkpoints: (chain id, tree size, Merkle root, time) signed with Ed25519."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.canonical import canonical_bytes

CHECKPOINT_TYPE = "tooltrail.checkpoint.v1"


class Checkpoint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    chain_id: str
    size: int = Field(ge=0, description="Number of events covered (seq 0..size-1).")
    root: str = Field(pattern=r"^[0-9a-f]{64}$", description="RFC 6962 Merkle root (hex).")
    head: str = Field(pattern=r"^[0-9a-f]{64}$", description="Hash-chain head: `hash` of event size-1.")
    time: str = Field(description="When it was signed (canonical UTC timestamp).")
    key_id: str = Field(description="sha256 of the raw public key, first 16 hex chars.")
    signature: str = Field(description="Ed25519 signature (base64) over `signed_bytes()`.")

    def signed_bytes(self) -> bytes:
        return checkpoint_message(self.chain_id, self.size, self.root, self.head, self.time)


def checkpoint_message(chain_id: str, size: int, root: str, head: str, time: str) -> bytes:
    return canonical_bytes(
        {"type": CHECKPOINT_TYPE, "chain_id": chain_id, "size": size, "root": root, "head": head, "time": time}
    )
