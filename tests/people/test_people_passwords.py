"""Passwords: the policy, argon2id hashing, and no plaintext in the database."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from conftest_helpers import NOW
from glasskey.errors import AdminAuthError, ClientError
from glasskey.people.passwords import check_policy, hash_password, needs_rehash, verify_password
from glasskey.people.tables import users
from glasskey.people.users import change_password, check_password, create_user


@pytest.mark.parametrize(
    "password, reason",
    [
        ("short1!", "at least 12"),
        ("a" * 257, "at most 256"),
        ("aaaaaaaaaaaaaaaa", "5 different"),
        ("password1234", "most common"),
        ("x-alice-long-secret", "email's name"),
        ("nul\x00inside-long-pass", "NUL"),
    ],
)
def test_the_policy_refuses_weak_passwords_and_says_why(password, reason):
    with pytest.raises(ClientError) as refused:
        check_policy(password, email="alice@example.com")
    assert reason in refused.value.message
    assert refused.value.param == "password"
    assert password not in refused.value.message  # a refusal never echoes the password


def test_a_good_password_passes_the_policy():
    check_policy("correct staple horse battery 9", email="alice@example.com")


def test_hashes_are_argon2id_salted_and_verify_only_the_right_password():
    first, second = hash_password("a long passphrase 42"), hash_password("a long passphrase 42")
    assert first.startswith("$argon2id$") and first != second  # a salt of its own
    assert "passphrase" not in first
    assert verify_password(first, "a long passphrase 42")
    assert not verify_password(first, "a long passphrase 43")
    assert not verify_password(None, "a long passphrase 42")  # unknown account: same work, no match
    assert not verify_password("not a hash", "a long passphrase 42")
    assert not needs_rehash(first)


def test_no_plaintext_password_is_stored_and_a_wrong_one_reveals_nothing(db):
    with db.write() as conn:
        user = create_user(conn, " Alice@Example.COM ", "a long passphrase 42", NOW)
    with db.read() as conn:
        stored = conn.execute(select(users)).one()._mapping
        assert user.email == "alice@example.com"
        assert all("passphrase" not in str(value) for value in stored.values())
        with pytest.raises(AdminAuthError) as wrong_password:
            check_password(conn, "alice@example.com", "a long passphrase 43")
        with pytest.raises(AdminAuthError) as unknown_email:
            check_password(conn, "bob@example.com", "a long passphrase 42")
    assert wrong_password.value.message == unknown_email.value.message  # no account enumeration


def test_duplicate_emails_are_refused_whatever_their_case(db):
    with db.write() as conn:
        create_user(conn, "alice@example.com", "a long passphrase 42", NOW)
    with db.write() as conn, pytest.raises(ClientError) as refused:
        create_user(conn, "ALICE@example.com", "another passphrase 7", NOW)
    assert refused.value.status_code == 409


def test_a_password_change_checks_the_old_one_and_bumps_the_credential_version(db):
    with db.write() as conn:
        user = create_user(conn, "alice@example.com", "a long passphrase 42", NOW)
    with db.write() as conn, pytest.raises(AdminAuthError):
        change_password(conn, user.id, "not the password 1", "a brand new passphrase", NOW)
    with db.write() as conn:
        changed = change_password(conn, user.id, "a long passphrase 42", "a brand new passphrase", NOW)
    assert changed.credential_version == user.credential_version + 1
    with db.read() as conn:
        check_password(conn, "alice@example.com", "a brand new passphrase")
        with pytest.raises(AdminAuthError):
            check_password(conn, "alice@example.com", "a long passphrase 42")
