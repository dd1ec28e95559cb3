"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

Every request carries
    webhook-id:        the message id (stable across retries and restarts: receivers dedupe on it)
    webhook-timestamp: Unix seconds of this attempt
    webhook-signature: "v1,<base64 HMAC-SHA256(key, f'{id}.{timestamp}.{body}')>" - one entry per
                       configured secret, space separated (secret rotation)
where key is the base64-decoded part of the secret "whsec_<base64>".
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as _secrets
import time

from detect.settings import check_whsec

DEFAULT_TOLERANCE_S = 300


def new_secret(nbytes: int = 32) -> str:
    return "whsec_" + base64.b64encode(_secrets.token_bytes(nbytes)).decode()


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = check_whsec(secret)
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def sign_headers(secrets: list[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    h = {"webhook-id": msg_id, "webhook-timestamp": str(int(timestamp))}
    if secrets:
        h["webhook-signature"] = " ".join(signature(s, msg_id, int(timestamp), body) for s in secrets)
    return h


def verify(secret: str, headers: dict[str, str], body: bytes, *, tolerance_s: int = DEFAULT_TOLERANCE_S,
           now: float | None = None) -> bool:
    """Receiver-side check (the same logic as the snippet in docs/readme/alerting.md)."""
    h = {k.lower(): v for k, v in headers.items()}
    msg_id, ts, sigs = h.get("webhook-id"), h.get("webhook-timestamp"), h.get("webhook-signature")
    if not (msg_id and ts and sigs) or not ts.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(ts)) > tolerance_s:
        return False
    expected = signature(secret, msg_id, int(ts), body)
    return any(hmac.compare_digest(expected, s) for s in sigs.split())
