"""Sealing a small secret that must be read back (a TOTP seed): AES-256-GCM under a key derived from the pepper.

A hash cannot be used for a TOTP seed, since checking a code needs the seed itself. The key is
``HMAC-SHA256(key pepper, purpose)``, so a database dump alone does not reveal the seeds, and each
purpose has its own key. The sealed text is ``v1.<nonce>.<ciphertext>`` in URL-safe base64.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from glasskey.errors import InvariantViolation

_VERSION = "v1"
_NONCE_BYTES = 12


def _key(pepper: str, purpose: str) -> bytes:
    return hmac.new(pepper.encode(), f"glasskey seal {purpose}".encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def seal(pepper: str, purpose: str, plaintext: str) -> str:
    nonce = os.urandom(_NONCE_BYTES)
    ciphertext = AESGCM(_key(pepper, purpose)).encrypt(nonce, plaintext.encode(), purpose.encode())
    return f"{_VERSION}.{_b64(nonce)}.{_b64(ciphertext)}"


def unseal(pepper: str, purpose: str, sealed: str) -> str:
    """The plaintext; a wrong pepper or an edited row is a broken invariant, not a user's mistake."""
    version, _, rest = sealed.partition(".")
    nonce_text, _, ciphertext_text = rest.partition(".")
    if version != _VERSION or not nonce_text or not ciphertext_text:
        raise InvariantViolation("a sealed secret is not in the v1 format")
    try:
        plaintext = AESGCM(_key(pepper, purpose)).decrypt(_unb64(nonce_text), _unb64(ciphertext_text), purpose.encode())
    except InvalidTag as exc:
        raise InvariantViolation("a sealed secret does not open: the key pepper changed or the row was edited") from exc
    return plaintext.decode()
