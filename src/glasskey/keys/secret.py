"""The key format ``gk-<public id>-<secret>`` and the keyed hash under which the secret is stored.

The public id is visible (it names the key in receipts, logs and the dashboard); the secret is
shown once at creation and stored only as ``HMAC-SHA256(pepper, secret)``. A database dump
alone therefore cannot be used to forge or check a key without the pepper.

``SecretFormat`` is the shape itself, so that other bearer secrets (people's access tokens,
``gkp-…``) are made, parsed and hashed the same way under their own prefix.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass, field

PREFIX = "gk"
PUBLIC_ID_LENGTH = 12
SECRET_LENGTH = 40
_PUBLIC_ALPHABET = string.ascii_lowercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class SecretFormat:
    """``<prefix>-<public id>-<secret>``: a visible public id, and a secret stored only as a keyed hash."""

    prefix: str
    # One compiled match instead of a check per character: every request parses its key.
    shape: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        shape = re.compile(
            rf"{re.escape(self.prefix)}-([{re.escape(_PUBLIC_ALPHABET)}]{{{PUBLIC_ID_LENGTH}}})"
            rf"-([{re.escape(_SECRET_ALPHABET)}]{{{SECRET_LENGTH}}})"
        )
        object.__setattr__(self, "shape", shape)

    def generate(self) -> tuple[str, str, str]:
        """A new secret: ``(full text, public id, secret)``."""
        public_id = "".join(secrets.choice(_PUBLIC_ALPHABET) for _ in range(PUBLIC_ID_LENGTH))
        secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(SECRET_LENGTH))
        return f"{self.prefix}-{public_id}-{secret}", public_id, secret

    def parse(self, full_text: str) -> tuple[str, str] | None:
        """``(public id, secret)``, or None when the text is not of this shape."""
        match = self.shape.fullmatch(full_text)
        if match is None:
            return None
        return match.group(1), match.group(2)


KEY = SecretFormat(PREFIX)


def generate() -> tuple[str, str, str]:
    """A new key: ``(full key, public id, secret)``."""
    return KEY.generate()


def parse(full_key: str) -> tuple[str, str] | None:
    """``(public id, secret)``, or None when the text is not shaped like a glasskey key."""
    return KEY.parse(full_key)


def hash_secret(pepper: str, secret: str) -> str:
    return hmac.new(pepper.encode(), secret.encode(), hashlib.sha256).hexdigest()


def verify(pepper: str, secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(pepper, secret), stored_hash)
