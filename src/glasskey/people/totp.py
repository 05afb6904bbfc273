"""The optional second factor: RFC 6238 codes (``pyotp``) and one-time recovery codes.

A person turns TOTP on by proving a first code for a seed they were shown; the seed is then stored
sealed (``people.sealing``) and ten recovery codes are shown once, stored only as peppered HMACs.
A code is accepted within one 30-second step either side, and never twice: the last accepted step
is kept, so a code seen over someone's shoulder cannot be replayed.
"""

from __future__ import annotations

import hmac
import re
import secrets
from datetime import datetime
from typing import Any

import pyotp
from sqlalchemy import Connection, select, update

from glasskey.errors import AdminAuthError, ClientError, NotFound
from glasskey.ids import new_id
from glasskey.keys.secret import hash_secret
from glasskey.people.passwords import verify_password
from glasskey.people.sealing import seal, unseal
from glasskey.people.tables import recovery_codes, users

SEAL_PURPOSE = "totp"
STEP_SECONDS = 30
RECOVERY_CODE_COUNT = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i to misread
WRONG_CODE = "Incorrect one-time code"
WRONG_PASSWORD = "Incorrect password"
ALREADY_ON = (
    "The second factor is already on: turn it off first, or give a current code of the device it is on "
    "(current_code) to replace it"
)
# A seed is base32 (RFC 4648, no padding): what ``new_totp_secret`` makes is 32 characters. Anything
# else sent back as "the secret I was shown" is refused before pyotp tries to decode it.
_SECRET_PATTERN = re.compile(r"[A-Z2-7]{16,64}")


def new_totp_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, email: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name="glasskey")


def _matching_step(secret: str, code: str, now: datetime) -> int | None:
    if not (len(code) == 6 and code.isdigit()):
        return None
    totp = pyotp.TOTP(secret)
    current = int(now.timestamp()) // STEP_SECONDS
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.at(step * STEP_SECONDS), code):
            return step
    return None


def _new_recovery_code() -> str:
    raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(12))
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


def enable_totp(
    conn: Connection,
    user_id: str,
    *,
    pepper: str,
    secret: str,
    code: str,
    now: datetime,
    current_code: str | None = None,
) -> list[str]:
    """Turn TOTP on once ``code`` proves the person holds ``secret``; the recovery codes, shown once.

    A person whose TOTP is already on replaces the device only with ``current_code``, a fresh code of
    the old device (or a recovery code), checked as at sign-in: without it a stolen session or token
    could swap the second factor for the thief's. Otherwise the factor must be turned off first, with a
    proof (``disable_totp_with_proof``). Raises ``ClientError`` (``totp_already_on``, a bad secret or
    code), ``AdminAuthError`` (a wrong current code) or ``NotFound``.
    """
    row = conn.execute(select(users).where(users.c.id == user_id)).first()
    if row is None:
        raise NotFound(f"user {user_id} does not exist")
    if row.totp_sealed is not None:
        if not (current_code or "").strip():
            raise ClientError(ALREADY_ON, code="totp_already_on", param="current_code", status_code=409)
        check_second_factor(conn, row, pepper=pepper, code=current_code, now=now)
    if not _SECRET_PATTERN.fullmatch(secret):
        raise ClientError("That is not a secret glasskey made: ask for a new one", param="secret")
    step = _matching_step(secret, code.strip(), now)
    if step is None:
        raise ClientError("That code does not match the new secret; check the device's clock", param="code")
    # Conditional on the factor read above: of two set-ups racing, the second finds it changed and fails.
    unchanged = users.c.totp_sealed.is_(None) if row.totp_sealed is None else users.c.totp_sealed == row.totp_sealed
    turned_on = conn.execute(
        update(users)
        .where(users.c.id == user_id)
        .where(unchanged)
        .values(totp_sealed=seal(pepper, SEAL_PURPOSE, secret), totp_last_step=step)
    ).rowcount
    if turned_on != 1:
        raise ClientError(ALREADY_ON, code="totp_already_on", param="current_code", status_code=409)
    conn.execute(recovery_codes.delete().where(recovery_codes.c.user_id == user_id))
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    for text in codes:
        conn.execute(
            recovery_codes.insert().values(
                id=new_id("rec"), user_id=user_id, code_hash=hash_secret(pepper, text), used_at=None
            )
        )
    return codes


def disable_totp(conn: Connection, user_id: str) -> None:
    """Turn TOTP off with no proof: for the callers that checked one, and the operator's reset."""
    conn.execute(update(users).where(users.c.id == user_id).values(totp_sealed=None, totp_last_step=None))
    conn.execute(recovery_codes.delete().where(recovery_codes.c.user_id == user_id))


def disable_totp_with_proof(
    conn: Connection, user_id: str, *, pepper: str, code: str, password: str, now: datetime
) -> None:
    """Turn TOTP off once the person proves it is them: a fresh code (or a recovery code), or the password.

    A code is checked as at sign-in (``check_second_factor``), so the code that turned TOTP on, or
    one that signed in, cannot be replayed here; a stolen session alone cannot drop the factor.
    """
    row = conn.execute(select(users).where(users.c.id == user_id)).first()
    if row is None:
        raise NotFound(f"user {user_id} does not exist")
    if row.totp_sealed is None:
        raise ClientError("The second factor is already off", param="code")
    if code.strip():
        check_second_factor(conn, row, pepper=pepper, code=code, now=now)
    elif password:
        if not verify_password(row.password_hash, password):
            raise AdminAuthError(WRONG_PASSWORD, code="invalid_credentials")
    else:
        raise ClientError("Give a current one-time code, or your password", param="code")
    disable_totp(conn, user_id)


def reset_totp(conn: Connection, user_ref: str) -> None:
    """The operator turns a person's TOTP off (a lost device): no proof, so operator-only at every edge.

    The person then signs in with the password alone and may set up a new device. Their sessions and
    tokens are left as they are: a lost phone is not a stolen password. Raises ``ClientError`` if the
    factor is already off, ``NotFound`` for an unknown account.
    """
    row = conn.execute(select(users.c.id, users.c.totp_sealed).where(users.c.id == user_ref)).first()
    if row is None:
        raise NotFound(f"user {user_ref} does not exist")
    if row.totp_sealed is None:
        raise ClientError("The second factor of this account is already off", code="totp_not_enabled", status_code=409)
    disable_totp(conn, row.id)


def check_second_factor(conn: Connection, user_row: Any, *, pepper: str, code: str | None, now: datetime) -> None:
    """Accept a fresh TOTP code or an unused recovery code for a user with TOTP on; raise otherwise."""
    if user_row.totp_sealed is None:
        return
    if not code:
        raise AdminAuthError("This account needs its one-time code (or a recovery code)", code="totp_required")
    code = code.strip()
    step = _matching_step(unseal(pepper, SEAL_PURPOSE, user_row.totp_sealed), code, now)
    if step is not None:
        # The conditional UPDATE is the replay check: of two sign-ins with one code, one wins.
        used = conn.execute(
            update(users)
            .where(users.c.id == user_row.id)
            .where((users.c.totp_last_step.is_(None)) | (users.c.totp_last_step < step))
            .values(totp_last_step=step)
        ).rowcount
        if used == 1:
            return
        raise AdminAuthError(WRONG_CODE + " (a code is accepted once)", code="invalid_totp")
    digest = hash_secret(pepper, code.lower())
    spent = conn.execute(
        update(recovery_codes)
        .where(recovery_codes.c.user_id == user_row.id)
        .where(recovery_codes.c.code_hash == digest)
        .where(recovery_codes.c.used_at.is_(None))
        .values(used_at=now)
    ).rowcount
    if spent != 1:
        raise AdminAuthError(WRONG_CODE, code="invalid_totp")


def recovery_codes_left(conn: Connection, user_id: str) -> int:
    rows = conn.execute(
        select(recovery_codes.c.id).where(recovery_codes.c.user_id == user_id).where(recovery_codes.c.used_at.is_(None))
    )
    return len(rows.all())
