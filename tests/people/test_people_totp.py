"""The second factor: TOTP with replay refusal, recovery codes that work once, the seed sealed at rest."""

from __future__ import annotations

from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import select

from conftest_helpers import NOW
from glasskey.errors import AdminAuthError, ClientError, InvariantViolation, NotFound
from glasskey.people.audit import Actor
from glasskey.people.sealing import seal, unseal
from glasskey.people.signin import sign_in
from glasskey.people.tables import recovery_codes, users
from glasskey.people.totp import (
    disable_totp_with_proof,
    enable_totp,
    new_totp_secret,
    recovery_codes_left,
    reset_totp,
)
from glasskey.people.users import create_user
from people_helpers import PASSWORD, PEPPER

ACTOR = Actor("anonymous", address="203.0.113.9")


def _with_totp(db):
    secret = new_totp_secret()
    with db.write() as conn:
        user = create_user(conn, "alice@example.com", PASSWORD, NOW)
        codes = enable_totp(conn, user.id, pepper=PEPPER, secret=secret, code=pyotp.TOTP(secret).at(NOW), now=NOW)
    return user, secret, codes


def _sign_in(db, code, now):
    with db.write() as conn:
        return sign_in(
            conn, pepper=PEPPER, email="alice@example.com", password=PASSWORD, code=code, now=now, actor=ACTOR
        )


def test_turning_totp_on_needs_a_valid_code_for_the_secret(db):
    with db.write() as conn:
        user = create_user(conn, "alice@example.com", PASSWORD, NOW)
        with pytest.raises(ClientError):
            enable_totp(conn, user.id, pepper=PEPPER, secret=new_totp_secret(), code="000000", now=NOW)


def test_the_seed_and_recovery_codes_are_never_stored_in_clear(db):
    _user, secret, codes = _with_totp(db)
    assert len(codes) == 10 and len(set(codes)) == 10
    with db.read() as conn:
        row = conn.execute(select(users)).one()
        stored_codes = [r.code_hash for r in conn.execute(select(recovery_codes))]
    assert secret not in row.totp_sealed and unseal(PEPPER, "totp", row.totp_sealed) == secret
    assert not any(code in stored for code in codes for stored in stored_codes)


def test_a_code_is_needed_accepted_once_and_never_replayed(db):
    _user, secret, _codes = _with_totp(db)
    later = NOW + timedelta(minutes=5)
    with pytest.raises(AdminAuthError) as missing:
        _sign_in(db, None, later)
    assert missing.value.code == "totp_required"
    code = pyotp.TOTP(secret).at(later)
    assert _sign_in(db, code, later).email == "alice@example.com"
    with pytest.raises(AdminAuthError) as replayed:
        _sign_in(db, code, later)
    assert replayed.value.code == "invalid_totp"
    with pytest.raises(AdminAuthError):
        _sign_in(db, "123456" if code != "123456" else "654321", later + timedelta(minutes=5))


def test_an_old_code_from_before_the_last_accepted_one_is_refused(db):
    _user, secret, _codes = _with_totp(db)
    later = NOW + timedelta(minutes=5)
    _sign_in(db, pyotp.TOTP(secret).at(later), later)
    # One step earlier is within the clock-drift window, but older than the code just used.
    with pytest.raises(AdminAuthError):
        _sign_in(db, pyotp.TOTP(secret).at(later - timedelta(seconds=30)), later)


def test_a_recovery_code_works_once(db):
    user, _secret, codes = _with_totp(db)
    assert _sign_in(db, codes[0].upper(), NOW).id == user.id
    with pytest.raises(AdminAuthError):
        _sign_in(db, codes[0], NOW)
    with db.read() as conn:
        assert recovery_codes_left(conn, user.id) == 9


def test_a_sealed_secret_does_not_open_under_another_pepper_or_purpose():
    sealed = seal(PEPPER, "totp", "JBSWY3DPEHPK3PXP")
    assert unseal(PEPPER, "totp", sealed) == "JBSWY3DPEHPK3PXP"
    with pytest.raises(InvariantViolation):
        unseal("another pepper 0123456789abcdef", "totp", sealed)
    with pytest.raises(InvariantViolation):
        unseal(PEPPER, "other", sealed)


def test_a_malformed_secret_is_refused_before_pyotp_reads_it(db):
    with db.write() as conn:
        user = create_user(conn, "bob@example.com", PASSWORD, NOW)
        with pytest.raises(ClientError) as refused:
            enable_totp(conn, user.id, pepper=PEPPER, secret="not base32!", code="123456", now=NOW)
    assert refused.value.param == "secret"


def test_turning_totp_off_needs_a_fresh_code_or_the_password(db):
    user, secret, _codes = _with_totp(db)
    refusals = {
        ("", ""): "Give a current one-time code",
        (pyotp.TOTP(secret).at(NOW), ""): "accepted once",  # the code that turned it on, replayed
        ("", "not the password 1"): "Incorrect password",
    }
    for (code, password), message in refusals.items():
        with pytest.raises((AdminAuthError, ClientError), match=message), db.write() as conn:
            disable_totp_with_proof(conn, user.id, pepper=PEPPER, code=code, password=password, now=NOW)
    with db.read() as conn:
        assert conn.scalar(select(users.c.totp_sealed).where(users.c.id == user.id)) is not None
    later = NOW + timedelta(seconds=90)
    with db.write() as conn:
        disable_totp_with_proof(conn, user.id, pepper=PEPPER, code=pyotp.TOTP(secret).at(later), password="", now=later)
        assert conn.scalar(select(users.c.totp_sealed).where(users.c.id == user.id)) is None
        assert recovery_codes_left(conn, user.id) == 0
        with pytest.raises(ClientError, match="already off"):
            disable_totp_with_proof(conn, user.id, pepper=PEPPER, code="", password=PASSWORD, now=later)


def _secret_of(db, user_id):
    with db.read() as conn:
        return unseal(PEPPER, "totp", conn.scalar(select(users.c.totp_sealed).where(users.c.id == user_id)))


def test_a_second_device_replaces_the_first_only_with_a_current_code_of_the_first(db):
    user, old, old_codes = _with_totp(db)
    new = new_totp_secret()
    later = NOW + timedelta(minutes=2)
    new_code = pyotp.TOTP(new).at(later)
    # No proof of the old device (what a stolen session or token has): refused, the old one stays.
    with pytest.raises(ClientError) as unproven, db.write() as conn:
        enable_totp(conn, user.id, pepper=PEPPER, secret=new, code=new_code, now=later)
    assert (unproven.value.code, unproven.value.status_code) == ("totp_already_on", 409)
    wrong = "123456" if pyotp.TOTP(old).at(later) != "123456" else "654321"
    with pytest.raises(AdminAuthError), db.write() as conn:
        enable_totp(conn, user.id, pepper=PEPPER, secret=new, code=new_code, now=later, current_code=wrong)
    with pytest.raises(AdminAuthError, match="accepted once"), db.write() as conn:  # the enabling code, replayed
        enable_totp(
            conn, user.id, pepper=PEPPER, secret=new, code=new_code, now=NOW, current_code=pyotp.TOTP(old).at(NOW)
        )
    assert _secret_of(db, user.id) == old
    with db.write() as conn:
        codes = enable_totp(
            conn, user.id, pepper=PEPPER, secret=new, code=new_code, now=later, current_code=pyotp.TOTP(old).at(later)
        )
    assert _secret_of(db, user.id) == new and not set(codes) & set(old_codes)
    with pytest.raises(AdminAuthError):  # the old recovery codes went with the old device
        _sign_in(db, old_codes[0], later)


def test_the_operators_reset_turns_the_factor_off_without_a_proof(db):
    user, _secret, _codes = _with_totp(db)
    with db.write() as conn:
        reset_totp(conn, user.id)
        assert conn.scalar(select(users.c.totp_sealed).where(users.c.id == user.id)) is None
        assert recovery_codes_left(conn, user.id) == 0
        with pytest.raises(ClientError) as again:
            reset_totp(conn, user.id)
        assert again.value.code == "totp_not_enabled"
        with pytest.raises(NotFound):
            reset_totp(conn, "usr_nobody")
    assert _sign_in(db, None, NOW).id == user.id  # the password alone signs in now
