"""Creating, finding, changing, revoking and authenticating keys, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from conftest_helpers import NOW
from glasskey.errors import APIKeyError, ClientError, NotFound
from glasskey.keys import secret as key_secret
from glasskey.keys.policy import KeyPolicy
from glasskey.keys.service import (
    KeyRecord,
    authenticate,
    bearer_token,
    create_key,
    get_key,
    list_keys,
    revoke_key,
    update_key,
)
from glasskey.orgs.service import create_org
from glasskey.store.database import Database

PEPPER = "pepper-for-tests-0123456789abcdef"


def new_key(db: Database, *, org_name: str = "acme", policy: KeyPolicy | None = None) -> tuple[KeyRecord, str]:
    with db.write() as conn:
        org = create_org(conn, org_name, NOW)
        return create_key(
            conn,
            pepper=PEPPER,
            org_id=org.id,
            name="research bot",
            owner="ada@example.com",
            policy=policy or KeyPolicy(),
            now=NOW,
        )


def login(db: Database, token: str, *, at: timedelta = timedelta(0)) -> KeyRecord:
    with db.read() as conn:
        return authenticate(conn, pepper=PEPPER, token=token, now=NOW + at)


def test_create_key_returns_the_full_key_once_with_its_record(db: Database) -> None:
    policy = KeyPolicy(
        allowed_models=("gpt-4o-mini", "claude-sonnet-4-5"),
        settlement="routed",
        lower_cost_routes=True,
        budget_total_micros=5_000_000,
        budget_daily_micros=1_000_000,
        rpm_limit=60,
        expires_at=NOW + timedelta(days=30),
    )
    record, full_key = new_key(db, policy=policy)
    parsed = key_secret.parse(full_key)
    assert parsed is not None
    assert parsed[0] == record.public_id
    assert record.prefix == f"gk-{record.public_id}"
    assert record.policy == policy
    assert (record.name, record.owner, record.status) == ("research bot", "ada@example.com", "active")
    assert record.secret_hash == key_secret.hash_secret(PEPPER, parsed[1])


def test_the_stored_key_row_never_contains_the_secret(db: Database) -> None:
    record, full_key = new_key(db)
    parsed = key_secret.parse(full_key)
    assert parsed is not None
    secret = parsed[1]
    with db.read() as conn:
        rows = [dict(row._mapping) for row in conn.execute(text("select * from api_keys"))]
    assert len(rows) == 1
    stored = " ".join(str(value) for value in rows[0].values())
    assert secret not in stored
    assert full_key not in stored
    assert record.public_id in stored  # the public id is meant to be visible


def test_the_public_view_of_a_key_has_neither_secret_nor_hash(db: Database) -> None:
    record, full_key = new_key(db)
    shown = str(record.public())
    assert record.secret_hash not in shown
    assert full_key not in shown
    assert record.public()["prefix"] == record.prefix


def test_the_full_key_authenticates_as_its_record(db: Database) -> None:
    record, full_key = new_key(db)
    assert login(db, full_key).id == record.id


def failure_cases(db: Database) -> dict[str, tuple[str, timedelta]]:
    """name -> (token, when): every way a well-meant token can fail."""
    revoked, revoked_key = new_key(db, org_name="revoked")
    with db.write() as conn:
        revoke_key(conn, revoked.id, NOW)
    _, expiring_key = new_key(db, org_name="expiring", policy=KeyPolicy(expires_at=NOW + timedelta(hours=1)))
    _, good_key = new_key(db, org_name="good")
    unknown_key, _, _ = key_secret.generate()
    public_id = good_key.split("-")[1]
    return {
        "unknown": (unknown_key, timedelta(0)),
        "wrong secret": (f"gk-{public_id}-{'Z' * 40}", timedelta(0)),
        "malformed": (good_key + "x", timedelta(0)),
        "revoked": (revoked_key, timedelta(0)),
        "expired": (expiring_key, timedelta(hours=2)),
        "expired at the very second": (expiring_key, timedelta(hours=1)),
    }


EXPECTED_CODES = {
    "unknown": "invalid_api_key",
    "wrong secret": "invalid_api_key",
    "malformed": "invalid_api_key",
    "revoked": "key_revoked",
    "expired": "key_expired",
    "expired at the very second": "key_expired",
}


@pytest.mark.parametrize("case", list(EXPECTED_CODES))
def test_a_key_that_cannot_be_used_is_refused_as_a_key_error_that_echoes_no_secret(db: Database, case: str) -> None:
    token, when = failure_cases(db)[case]
    with pytest.raises(APIKeyError) as caught:
        login(db, token, at=when)
    error = caught.value
    assert error.source == "key"
    assert error.status_code == 401
    assert error.code == EXPECTED_CODES[case]
    secret_part = token.rsplit("-", 1)[-1]
    assert secret_part not in error.message
    assert secret_part not in str(error)
    assert token not in repr(error)


def test_a_key_still_works_just_before_it_expires(db: Database) -> None:
    record, full_key = new_key(db, policy=KeyPolicy(expires_at=NOW + timedelta(hours=1)))
    assert login(db, full_key, at=timedelta(minutes=59)).id == record.id


def test_the_same_key_under_another_pepper_is_refused(db: Database) -> None:
    _, full_key = new_key(db)
    with pytest.raises(APIKeyError), db.read() as conn:
        authenticate(conn, pepper="another-pepper-0123456789abcdef", token=full_key, now=NOW)


def test_revoking_twice_keeps_the_first_revocation_time(db: Database) -> None:
    record, _ = new_key(db)
    with db.write() as conn:
        first = revoke_key(conn, record.id, NOW)
        second = revoke_key(conn, record.id, NOW + timedelta(days=1))
    assert first.status == second.status == "revoked"
    assert second.revoked_at == NOW


def test_update_key_changes_its_policy_and_keeps_the_rest(db: Database) -> None:
    record, full_key = new_key(db)
    with db.write() as conn:
        updated = update_key(
            conn,
            record.id,
            name="nightly job",
            allowed_models=("gpt-4o-mini",),
            budget_daily_micros=250_000,
            backup_routes=True,
        )
    assert updated.name == "nightly job"
    assert updated.owner == "ada@example.com"
    assert updated.policy.allowed_models == ("gpt-4o-mini",)
    assert updated.policy.budget_daily_micros == 250_000
    assert updated.policy.backup_routes is True
    assert updated.policy.settlement == "routed"
    assert updated.secret_hash == record.secret_hash
    assert login(db, full_key).policy == updated.policy


@pytest.mark.parametrize(
    "change", [{"budget_total_micros": -1}, {"settlement": "free"}, {"rpm_limit": -5}], ids=lambda c: next(iter(c))
)
def test_update_key_refuses_an_invalid_policy_and_changes_nothing(db: Database, change: dict[str, Any]) -> None:
    record, _ = new_key(db)
    with pytest.raises(ClientError), db.write() as conn:
        update_key(conn, record.id, **change)
    with db.read() as conn:
        assert get_key(conn, record.id).policy == record.policy


def test_list_keys_lists_every_key_or_those_of_one_org(db: Database) -> None:
    first, _ = new_key(db, org_name="one")
    second, _ = new_key(db, org_name="two")
    with db.read() as conn:
        everything = list_keys(conn)
        of_one = list_keys(conn, first.org_id)
    assert {k.id for k in everything} == {first.id, second.id}
    assert [k.id for k in of_one] == [first.id]


def test_a_key_is_found_by_its_id_or_its_public_prefix(db: Database) -> None:
    record, _ = new_key(db)
    with db.read() as conn:
        assert get_key(conn, record.id) == record
        assert get_key(conn, record.prefix) == record
        with pytest.raises(NotFound):
            get_key(conn, "gk-zzzzzzzzzzzz")
        with pytest.raises(NotFound):
            get_key(conn, "key_does_not_exist")


def test_a_key_needs_an_existing_org_and_a_name(db: Database) -> None:
    with pytest.raises(NotFound), db.write() as conn:
        create_key(conn, pepper=PEPPER, org_id="org_missing", name="x", policy=KeyPolicy(), now=NOW)
    with db.write() as conn:
        org = create_org(conn, "acme", NOW)
    with pytest.raises(ClientError), db.write() as conn:
        create_key(conn, pepper=PEPPER, org_id=org.id, name="  ", policy=KeyPolicy(), now=NOW)
    with db.read() as conn:
        assert list_keys(conn) == []


def test_the_bearer_token_is_read_from_the_authorization_header() -> None:
    assert bearer_token("Bearer gk-abc") == "gk-abc"
    assert bearer_token("bearer   gk-abc  ") == "gk-abc"
    with pytest.raises(APIKeyError) as missing:
        bearer_token(None)
    assert missing.value.code == "missing_api_key"
    for header in ("", "Basic gk-abc", "Bearer ", "gk-abc"):
        with pytest.raises(APIKeyError):
            bearer_token(header)


def test_a_policy_refuses_nonsense_and_names_the_wallet_it_settles_on() -> None:
    assert KeyPolicy(settlement="official").wallet_kind == "credit"
    assert KeyPolicy(settlement="routed").wallet_kind == "routed"
    assert KeyPolicy().allows("anything")
    assert not KeyPolicy(allowed_models=("gpt-4o",)).allows("gpt-4o-mini")
    with pytest.raises(ClientError):
        KeyPolicy(settlement="cheap")
    with pytest.raises(ClientError):
        KeyPolicy(expires_at=NOW.replace(tzinfo=None))
    with pytest.raises(ClientError):
        KeyPolicy(budget_daily_micros=-1)
