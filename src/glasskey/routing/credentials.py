"""Route credentials sealed at rest: what is stored, how it is opened, and how the key rotates.

A route's credential is stored as ``sealed:v1:<mask>:<token>``: ``token`` is the credential
encrypted with Fernet (AES-128-CBC with an HMAC-SHA256 tag, from ``cryptography``) under the
``encryption_key`` setting, which is never in the database, so a dump or a backup of the database
alone does not give the upstream keys away. ``mask`` is what every API shows (``sk-…3456``): it is
stored beside the token so that listing routes never needs to open one.

A credential is opened only when a request runs (``providers.sealed``), never to show it. An
``env:NAME`` reference is sealed like any credential and opened to ``env:NAME``, which the
provider then reads from the environment as before.

Rotation: the vault seals with the first key and opens with any of them (``MultiFernet``), so
a new key goes first, the old ones follow in ``previous_encryption_keys`` while
``reseal_stored_credentials`` rewrites every row under the new key, then they can be removed.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Connection, select, update

from glasskey.errors import RouteError
from glasskey.store.tables import routes

SEALED_PREFIX = "sealed:v1:"


def mask_secret(secret: str | None) -> str | None:
    """``sk-abcdef123456 -> "sk-…3456"``: enough to recognise, never enough to use."""
    if not secret:
        return None
    return f"{secret[:3]}…{secret[-4:]}" if len(secret) >= 12 else "…"


def is_sealed(stored: str | None) -> bool:
    return stored is not None and stored.startswith(SEALED_PREFIX)


def shown_credential(stored: str | None) -> str | None:
    """What an API shows of a stored credential: its mask, without opening it."""
    if stored is None or not is_sealed(stored):
        return mask_secret(stored)
    mask, _, _ = stored.removeprefix(SEALED_PREFIX).rpartition(":")
    return mask or None


class CredentialUnopenable(RouteError):
    """A sealed credential that none of the configured encryption keys opens."""

    code = "credential_unopenable"
    status_code = 502


class CredentialVault:
    """Seals with the first of ``keys``, opens with any of them."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("a vault needs at least one key")
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    @staticmethod
    def generate_key() -> str:
        return Fernet.generate_key().decode()

    def seal(self, credential: str | None) -> str | None:
        """The stored form of ``credential`` (None stays None: a route without a credential)."""
        if credential is None:
            return None
        token = self._fernet.encrypt(credential.encode()).decode()
        return f"{SEALED_PREFIX}{mask_secret(credential) or ''}:{token}"

    def open(self, stored: str | None) -> str | None:
        """The credential a stored value seals; a value stored unsealed (before 0003) is itself."""
        if stored is None or not is_sealed(stored):
            return stored
        _, _, token = stored.rpartition(":")
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise CredentialUnopenable(
                "the route's credential was sealed with an encryption key that is not configured"
            ) from None

    def reseal(self, stored: str | None) -> str | None:
        """``stored`` sealed under the first key (sealed now if it was stored unsealed)."""
        if stored is None or not is_sealed(stored):
            return self.seal(stored)
        head, _, token = stored.rpartition(":")
        try:
            return f"{head}:{self._fernet.rotate(token.encode()).decode()}"
        except InvalidToken:
            raise CredentialUnopenable(
                "the route's credential was sealed with an encryption key that is not configured"
            ) from None


def seal_stored_credentials(conn: Connection, vault: CredentialVault) -> int:
    """Seal every credential still stored unsealed (rows from before 0003); returns how many."""
    rows = conn.execute(select(routes.c.id, routes.c.credential).where(routes.c.credential.is_not(None))).all()
    unsealed = [(row.id, row.credential) for row in rows if not is_sealed(row.credential)]
    for route_id, credential in unsealed:
        conn.execute(update(routes).where(routes.c.id == route_id).values(credential=vault.seal(credential)))
    return len(unsealed)


def resealed_all(
    vault: CredentialVault, stored: list[tuple[str, str | None]], what: str
) -> list[tuple[str, str | None]]:
    """Each ``(id, sealed)`` sealed again under the vault's first key, all or nothing: when one opens
    with none of the keys, ``CredentialUnopenable`` names every such id (``what`` says whose they
    are, e.g. "the credential of route(s)") and nothing is to be rewritten."""
    resealed: list[tuple[str, str | None]] = []
    unopenable: list[str] = []
    for row_id, sealed in stored:
        try:
            resealed.append((row_id, vault.reseal(sealed)))
        except CredentialUnopenable:
            unopenable.append(row_id)
    if unopenable:
        raise CredentialUnopenable(
            f"no configured encryption key opens {what} {', '.join(sorted(unopenable))}: "
            "add the key they were sealed with to previous_encryption_keys; nothing was changed"
        )
    return resealed


def reseal_stored_credentials(conn: Connection, vault: CredentialVault) -> int:
    """Rewrite every stored credential under the vault's first key; returns how many.

    All or nothing: when one route's credential opens with none of the keys, nothing is
    rewritten and ``CredentialUnopenable`` names every such route.
    """
    rows = conn.execute(select(routes.c.id, routes.c.credential).where(routes.c.credential.is_not(None))).all()
    resealed = resealed_all(vault, [(row.id, row.credential) for row in rows], "the credential of route(s)")
    for route_id, credential in resealed:
        conn.execute(update(routes).where(routes.c.id == route_id).values(credential=credential))
    return len(resealed)
