"""The key format ``gk-<public id>-<secret>`` and the keyed hash under which the secret is stored.

The public id is visible (it names the key in receipts, logs and the dashboard); the secret is
shown once at creation and stored only as ``HMAC-SHA256(pepper, secret)``. A database dump
alone therefore cannot be used to forge or check a key without the pepper.

``SecretFormat`` is the shape itself, so that other bearer secrets (people's access tokens,
``gkp-…``) are issued, referred to, parsed and checked the same way under their own prefix.
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
class Issued:
    """A secret just made: ``full_text`` is shown once; only ``secret_hash`` is stored."""

    full_text: str
    public_id: str
    secret_hash: str


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

    def issue(self, pepper: str) -> Issued:
        """A new secret, ready to store: the full text (to show once) and the hash of its secret part.

        Keys and access tokens are both issued this way, so the secret in clear never travels
        beyond this call except inside the text shown to its holder.
        """
        full_text, public_id, secret = self.generate()
        return Issued(full_text, public_id, hash_secret(pepper, secret))

    def public_id_of(self, reference: str) -> str | None:
        """The public id when ``reference`` is a visible prefix ``<prefix>-<public id>`` (not an internal id)."""
        head = f"{self.prefix}-"
        return reference.removeprefix(head) if reference.startswith(head) else None

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


# No HMAC-SHA256 hex digest of a real secret is expected to equal it.
NO_SECRET_HASH = "0" * 64


def verify(pepper: str, secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(pepper, secret), stored_hash)


def matches(pepper: str, secret: str, stored_hash: str | None) -> bool:
    """``verify`` against the stored hash, or, when no record was found, against a hash no secret has:
    the same work either way, so the answer's timing does not tell an unknown public id from a wrong secret."""
    return (
        verify(pepper, secret, stored_hash if stored_hash is not None else NO_SECRET_HASH) and stored_hash is not None
    )
