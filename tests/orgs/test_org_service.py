"""Orgs, their two wallets, and top-ups, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from conftest_helpers import NOW
from glasskey.errors import ClientError, NotFound
from glasskey.ledger import audit
from glasskey.orgs.service import (
    create_org,
    get_org,
    get_wallet,
    list_orgs,
    list_wallets,
    top_up,
    wallet_account_id,
)
from glasskey.store.database import Database


def test_an_org_is_found_by_its_id_or_its_name(db: Database) -> None:
    with db.write() as conn:
        org = create_org(conn, "acme", NOW)
    with db.read() as conn:
        assert get_org(conn, org.id) == org
        assert get_org(conn, "acme") == org
        with pytest.raises(NotFound):
            get_org(conn, "nobody")
    assert org.public() == {"id": org.id, "name": "acme", "created_at": NOW.isoformat()}


def test_org_names_are_required_and_unique(db: Database) -> None:
    with db.write() as conn:
        create_org(conn, "acme", NOW)
    with pytest.raises(ClientError) as duplicate, db.write() as conn:
        create_org(conn, "acme", NOW)
    assert duplicate.value.status_code == 409
    with pytest.raises(ClientError) as blank, db.write() as conn:
        create_org(conn, "   ", NOW)
    assert blank.value.param == "name"
    with db.read() as conn:
        assert [o.name for o in list_orgs(conn)] == ["acme"]


def test_orgs_are_listed_by_name(db: Database) -> None:
    with db.write() as conn:
        for name in ("zeta", "alpha", "mid"):
            create_org(conn, name, NOW)
    with db.read() as conn:
        assert [o.name for o in list_orgs(conn)] == ["alpha", "mid", "zeta"]


def test_each_org_has_its_own_two_wallets(db: Database) -> None:
    with db.write() as conn:
        one = create_org(conn, "one", NOW)
        two = create_org(conn, "two", NOW)
        top_up(conn, one.id, "routed", 700, NOW)
    with db.read() as conn:
        accounts = {wallet_account_id(conn, org.id, kind) for org in (one, two) for kind in ("credit", "routed")}
        one_routed = get_wallet(conn, one.id, "routed")
        two_routed = get_wallet(conn, two.id, "routed")
        wallets = list_wallets(conn, one.id)
    assert len(accounts) == 4
    assert one_routed.balance.available_micros == 700
    assert two_routed.balance.available_micros == 0
    assert [w.public()["kind"] for w in wallets] == ["credit", "routed"]
    assert wallets[1].public() == {
        "org_id": one.id,
        "kind": "routed",
        "account_id": one_routed.account_id,
        "posted_micros": 700,
        "held_micros": 0,
        "available_micros": 700,
        "floor_micros": 0,
    }


def test_there_is_no_third_kind_of_wallet(db: Database) -> None:
    with db.write() as conn:
        org = create_org(conn, "acme", NOW)
    with pytest.raises(ClientError) as caught, db.write() as conn:
        top_up(conn, org.id, "savings", 100, NOW)
    assert caught.value.param == "kind"


def test_topping_up_an_unknown_org_is_not_found(db: Database) -> None:
    with pytest.raises(NotFound), db.write() as conn:
        top_up(conn, "org_missing", "credit", 100, NOW)
    with db.read() as conn:
        report = audit(conn)
    assert report.ok and report.transfers_checked == 0


def test_a_top_up_carries_its_memo(db: Database) -> None:
    with db.write() as conn:
        org = create_org(conn, "acme", NOW)
        plain = top_up(conn, org.id, "credit", 100, NOW)
        noted = top_up(conn, org.id, "credit", 100, NOW, memo="invoice 7")
    assert plain.memo == "top-up of credit wallet"
    assert noted.memo == "invoice 7"
    assert plain.kind == noted.kind == "topup"
