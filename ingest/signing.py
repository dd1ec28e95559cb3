"""Ed25519 checkpoint signing (cryptography). The key is generated on first run into
<data>/keys/signing.key (PKCS#8 PEM, 0600) or supplied via storage.signing_key_file."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ingest.fsio import read_or_create_secret, write_atomic
from schemas.checkpoint import Checkpoint, checkpoint_message


def _new_pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_raw(pub: Ed25519PublicKey) -> bytes:
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(pub: Ed25519PublicKey) -> str:
    return hashlib.sha256(public_raw(pub)).hexdigest()[:16]


def public_key_from_b64(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(text.strip()))


class Signer:
    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(self.public_key)

    @classmethod
    def load(cls, keys_dir: Path, key_file: str | None = None) -> Signer:
        pem = Path(key_file).read_bytes() if key_file else read_or_create_secret(keys_dir / "signing.key", _new_pem)
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("signing key must be an Ed25519 private key (PKCS#8 PEM)")
        signer = cls(key)
        pub_path = keys_dir / "signing.pub"
        if not pub_path.exists() or pub_path.read_text().strip() != signer.public_b64():
            write_atomic(pub_path, (signer.public_b64() + "\n").encode())
        return signer

    def public_b64(self) -> str:
        return base64.b64encode(public_raw(self.public_key)).decode()

    def sign(self, chain_id: str, size: int, root: str, head: str, time: str) -> Checkpoint:
        sig = self._key.sign(checkpoint_message(chain_id, size, root, head, time))
        return Checkpoint(chain_id=chain_id, size=size, root=root, head=head, time=time,
                          key_id=self.key_id, signature=base64.b64encode(sig).decode())


def verify_checkpoint(cp: Checkpoint, pub: Ed25519PublicKey) -> bool:
    try:
        pub.verify(base64.b64decode(cp.signature), cp.signed_bytes())
    except (InvalidSignature, ValueError):
        return False
    return key_id(pub) == cp.key_id


def load_public_key(keys_dir: Path, override: str | None = None) -> Ed25519PublicKey:
    """The trusted public key: an explicit file/base64 string wins over the data dir's copy."""
    if override:
        p = Path(override)
        text = p.read_text() if p.exists() else override
        return public_key_from_b64(text)
    return public_key_from_b64((keys_dir / "signing.pub").read_text())
