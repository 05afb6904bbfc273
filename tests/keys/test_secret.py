"""The key format ``gk-<public id>-<secret>`` and the keyed hash of the secret."""

from __future__ import annotations

import hashlib
import hmac
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from glasskey.keys import secret as key_secret

PEPPER = "pepper-for-tests-0123456789abcdef"
KEY_SHAPE = re.compile(r"gk-[a-z0-9]{12}-[A-Za-z0-9]{40}")
GOOD_PUBLIC = "abc123def456"
GOOD_SECRET = "A" * 20 + "b" * 10 + "0123456789"


def test_a_new_key_is_gk_then_a_12_character_public_id_then_a_40_character_secret() -> None:
    full_key, public_id, secret = key_secret.generate()
    assert KEY_SHAPE.fullmatch(full_key)
    assert full_key == f"gk-{public_id}-{secret}"
    assert key_secret.parse(full_key) == (public_id, secret)


def test_new_keys_never_repeat() -> None:
    keys = [key_secret.generate() for _ in range(200)]
    assert len({full for full, _, _ in keys}) == 200
    assert len({public for _, public, _ in keys}) == 200


def test_a_well_formed_key_parses_into_its_public_id_and_secret() -> None:
    assert key_secret.parse(f"gk-{GOOD_PUBLIC}-{GOOD_SECRET}") == (GOOD_PUBLIC, GOOD_SECRET)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "gk",
        "gk--",
        f"sk-{GOOD_PUBLIC}-{GOOD_SECRET}",
        f"GK-{GOOD_PUBLIC}-{GOOD_SECRET}",
        f"gk-{GOOD_PUBLIC}{GOOD_SECRET}",
        f"gk-{GOOD_PUBLIC}-{GOOD_SECRET}-extra",
        f"gk-{GOOD_PUBLIC[:-1]}-{GOOD_SECRET}",
        f"gk-{GOOD_PUBLIC}x-{GOOD_SECRET}",
        f"gk-{GOOD_PUBLIC}-{GOOD_SECRET[:-1]}",
        f"gk-{GOOD_PUBLIC}-{GOOD_SECRET}x",
        f"gk-{GOOD_PUBLIC.upper()}-{GOOD_SECRET}",
        f"gk-{GOOD_PUBLIC}-{GOOD_SECRET[:-1]}_",
        f"gk-{GOOD_PUBLIC}-{GOOD_SECRET[:-1]}é",
        f"gk-{GOOD_PUBLIC[:-1]}é-{GOOD_SECRET}",
        f" gk-{GOOD_PUBLIC}-{GOOD_SECRET}",
        f"gk-{GOOD_PUBLIC}-{GOOD_SECRET}\n",
    ],
    ids=lambda text: repr(text)[:30],
)
def test_text_not_shaped_like_a_key_is_rejected(text: str) -> None:
    assert key_secret.parse(text) is None


@given(st.one_of(st.text(max_size=80), st.from_regex(KEY_SHAPE, fullmatch=True)))
def test_parse_never_raises_and_accepts_exactly_the_key_shape(text: str) -> None:
    parsed = key_secret.parse(text)
    assert (parsed is not None) == bool(KEY_SHAPE.fullmatch(text))


def test_the_public_id_of_a_key_names_it_without_its_secret() -> None:
    full_key, public_id, secret = key_secret.generate()
    parsed = key_secret.parse(full_key)
    assert parsed == (public_id, secret)
    assert secret not in parsed[0]


def test_the_stored_hash_is_hmac_sha256_of_the_secret_under_the_pepper() -> None:
    expected = hmac.new(PEPPER.encode(), GOOD_SECRET.encode(), hashlib.sha256).hexdigest()
    assert key_secret.hash_secret(PEPPER, GOOD_SECRET) == expected
    # Not a bare hash: a database dump alone cannot be checked against guesses.
    assert key_secret.hash_secret(PEPPER, GOOD_SECRET) != hashlib.sha256(GOOD_SECRET.encode()).hexdigest()
    assert GOOD_SECRET not in key_secret.hash_secret(PEPPER, GOOD_SECRET)


def test_a_different_pepper_gives_a_different_hash() -> None:
    assert key_secret.hash_secret(PEPPER, GOOD_SECRET) != key_secret.hash_secret(PEPPER + "x", GOOD_SECRET)


def test_verify_accepts_only_the_right_secret_under_the_right_pepper() -> None:
    stored = key_secret.hash_secret(PEPPER, GOOD_SECRET)
    assert key_secret.verify(PEPPER, GOOD_SECRET, stored)
    assert not key_secret.verify(PEPPER, GOOD_SECRET[:-1] + "x", stored)
    assert not key_secret.verify("another-pepper-0123456789abcdef", GOOD_SECRET, stored)
    assert not key_secret.verify(PEPPER, GOOD_SECRET, stored[:-1])
    assert not key_secret.verify(PEPPER, GOOD_SECRET, "")


def test_keys_and_access_tokens_are_issued_and_referred_to_by_one_shape() -> None:
    for shape in (key_secret.KEY, key_secret.SecretFormat("gkp")):
        issued = shape.issue("pepper-0123456789abcdef")
        parsed = shape.parse(issued.full_text)
        assert parsed is not None and parsed[0] == issued.public_id
        assert key_secret.verify("pepper-0123456789abcdef", parsed[1], issued.secret_hash)
        assert parsed[1] not in issued.secret_hash  # only the hash is kept
        assert shape.public_id_of(f"{shape.prefix}-{issued.public_id}") == issued.public_id
        assert shape.public_id_of("key_0123") is None


def test_an_unknown_public_id_is_refused_like_a_wrong_secret() -> None:
    stored = key_secret.hash_secret("pepper", "right")
    assert key_secret.matches("pepper", "right", stored)
    assert not key_secret.matches("pepper", "wrong", stored)
    assert not key_secret.matches("pepper", "right", None)  # no record: checked against a hash no secret has
