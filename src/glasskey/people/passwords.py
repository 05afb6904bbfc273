"""Passwords: the policy a new password must meet, and argon2id hashing.

Only the argon2id hash is stored (salt and parameters inside it). The parameters are OWASP's
minimum for argon2id (19 MiB, two passes, one lane): about 20 ms per hash here, which bounds what
a flood of sign-ins can cost before the throttle refuses them. A sign-in for an unknown email
checks a dummy hash, so its timing does not tell which emails have accounts.
"""

from __future__ import annotations

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from glasskey.errors import ClientError

PASSWORD_MIN_LENGTH = 12
# argon2 would hash a megabyte happily; a bound keeps one request's cost bounded too.
PASSWORD_MAX_LENGTH = 256
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32, salt_len=16, type=Type.ID)
# Passwords people pick first; the policy refuses them whatever their length.
_COMMON = frozenset(
    {
        "password1234",
        "passwordpassword",
        "123456789012",
        "qwertyuiopasdf",
        "letmeinletmein",
        "correcthorsebatterystaple",
        "administrator",
        "glasskeyglasskey",
    }
)
_DUMMY_HASH = _HASHER.hash("a password nobody has, for timing")


def check_policy(password: str, *, email: str = "") -> None:
    """Refuse a password that is too short, too long, too simple, or made from the email."""
    if len(password) < PASSWORD_MIN_LENGTH:
        raise ClientError(f"a password needs at least {PASSWORD_MIN_LENGTH} characters", param="password")
    if len(password) > PASSWORD_MAX_LENGTH:
        raise ClientError(f"a password has at most {PASSWORD_MAX_LENGTH} characters", param="password")
    if "\x00" in password:
        raise ClientError("a password cannot contain a NUL character", param="password")
    if len(set(password)) < 5:
        raise ClientError("a password needs at least 5 different characters", param="password")
    lowered = password.lower()
    if lowered in _COMMON:
        raise ClientError("this password is among the most common ones; choose another", param="password")
    local_part = email.split("@", 1)[0].lower()
    if len(local_part) >= 4 and local_part in lowered:
        raise ClientError("a password must not contain the email's name", param="password")


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches; with no stored hash, the same work is done and False returned."""
    if len(password) > PASSWORD_MAX_LENGTH:
        return False
    try:
        return _HASHER.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _HASHER.check_needs_rehash(stored_hash)
