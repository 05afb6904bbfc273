"""How a webhook body is signed, and how a receiver checks it (docs/alerts.md shows the receiver's side).

Each attempt sends three headers: ``glasskey-event-id`` (the same on every retry of one event),
``glasskey-timestamp`` (Unix seconds of this attempt) and ``glasskey-signature``
(``v1=`` and the hex HMAC-SHA256, keyed by the org's webhook secret, of ``<timestamp>.<body>``).
The timestamp is inside the signature, so an old delivery replayed later fails the receiver's
window (``TOLERANCE_SECONDS``) and its timestamp cannot be changed without breaking the signature;
a replay inside the window is caught by the event id, which the receiver remembers for that long.
"""

from __future__ import annotations

import hashlib
import hmac

EVENT_ID_HEADER = "glasskey-event-id"
TIMESTAMP_HEADER = "glasskey-timestamp"
SIGNATURE_HEADER = "glasskey-signature"
TOLERANCE_SECONDS = 300
_VERSION = "v1="


def signature(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return _VERSION + digest


def signed_headers(secret: str, event_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        EVENT_ID_HEADER: event_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }


def verify(
    secret: str,
    timestamp: str,
    signature_sent: str,
    body: bytes,
    now_seconds: float,
    tolerance: int = TOLERANCE_SECONDS,
) -> bool:
    """Whether a delivery is genuine and recent: what a receiver checks before trusting a body."""
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    if abs(now_seconds - sent_at) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, sent_at, body), signature_sent)
