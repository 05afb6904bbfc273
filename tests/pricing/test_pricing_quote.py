"""Quotes: the route, prices, estimated and maximum charge, and admission of a request."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from conftest_helpers import NOW
from glasskey.errors import ModelError, RouteError
from glasskey.keys.budget import hold_budget
from glasskey.keys.policy import KeyPolicy
from glasskey.keys.service import KeyRecord, create_key
from glasskey.orgs.service import create_org, get_wallet, top_up
from glasskey.pricing.catalog import Prices
from glasskey.pricing.metering import max_charge
from glasskey.pricing.quote import quote_request
from glasskey.pricing.tokens import chat_input_tokens
from glasskey.routing.routes import Route, create_route
from glasskey.store.database import Database
from glasskey.store.tables import transfers

PEPPER = "pepper-for-tests-0123456789abcdef"
ROUTED_PRICES = Prices(input_per_mtok_micros=100_000, output_per_mtok_micros=400_000, cached_per_mtok_micros=50_000)
COSTS = Prices(input_per_mtok_micros=60_000, output_per_mtok_micros=240_000, cached_per_mtok_micros=30_000)
BODY: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "What does a token gateway do?"}],
    "max_tokens": 1_000,
}


def add_route(
    db: Database, *, settlement: str = "routed", priority: int = 100, prices: Prices = ROUTED_PRICES
) -> Route:
    with db.write() as conn:
        return create_route(
            conn,
            Route(
                id="",
                model="gpt-4o-mini",
                provider="simulated",
                base_url="",
                upstream_model="sim-mini",
                settlement=settlement,
                prices=prices,
                costs=COSTS,
                priority=priority,
            ),
            NOW,
        )


def new_key(db: Database, *, funded_micros: int = 0, **policy: Any) -> KeyRecord:
    with db.write() as conn:
        org = create_org(conn, "acme", NOW)
        if funded_micros:
            top_up(conn, org.id, "routed", funded_micros, NOW)
        key, _ = create_key(conn, pepper=PEPPER, org_id=org.id, name="job", policy=KeyPolicy(**policy), now=NOW)
    return key


def test_a_quote_names_the_route_its_prices_and_a_maximum_it_can_hold(db: Database) -> None:
    route = add_route(db)
    key = new_key(db, funded_micros=10_000_000)
    with db.read() as conn:
        quote, selection = quote_request(conn, key, BODY, NOW)
        wallet = get_wallet(conn, key.org_id, "routed")
    assert quote.route == route == selection.primary
    assert quote.prices == ROUTED_PRICES
    assert (quote.settlement, quote.wallet_kind, quote.wallet_account_id) == ("routed", "routed", wallet.account_id)
    assert quote.available_micros == 10_000_000
    assert quote.max_output_tokens == 1_000
    assert quote.max_input_tokens == chat_input_tokens(BODY).upper_bound
    assert quote.max_charge_micros == max_charge(quote.max_input_tokens, 1_000, ROUTED_PRICES)
    assert 0 < quote.estimated_charge_micros <= quote.max_charge_micros
    assert quote.admitted, quote.reason
    public = quote.public()
    assert public["route"]["provider"] == "simulated"
    assert public["max_charge_usd"] == f"0.{quote.max_charge_micros:06d}"
    assert public["unit_prices_per_mtok_micros"] == {"input": 100_000, "output": 400_000, "cached": 50_000}


def test_a_quote_picks_the_route_with_the_best_priority(db: Database) -> None:
    add_route(db, priority=20, prices=Prices(1, 1, 1))
    best = add_route(db, priority=10)
    key = new_key(db, funded_micros=10_000_000)
    with db.read() as conn:
        quote, selection = quote_request(conn, key, BODY, NOW)
    assert quote.route.id == best.id
    assert [r.priority for r in selection.routes] == [10, 20]


def test_a_quote_never_moves_money(db: Database) -> None:
    add_route(db)
    key = new_key(db, funded_micros=10_000_000)
    with db.read() as conn:
        before = conn.scalar(select(func.count()).select_from(transfers))
        quote_request(conn, key, BODY, NOW)
        assert conn.scalar(select(func.count()).select_from(transfers)) == before
        assert get_wallet(conn, key.org_id, "routed").balance.held_micros == 0


def test_a_quote_is_not_admitted_when_the_wallet_is_short(db: Database) -> None:
    add_route(db)
    key = new_key(db, funded_micros=10)
    with db.read() as conn:
        quote, _ = quote_request(conn, key, BODY, NOW)
    assert not quote.admitted
    assert "routed wallet" in quote.reason
    assert quote.available_micros == 10


def test_a_wallet_holding_exactly_the_maximum_charge_is_enough(db: Database) -> None:
    add_route(db)
    probe = new_key(db, funded_micros=10_000_000)
    with db.read() as conn:
        maximum = quote_request(conn, probe, BODY, NOW)[0].max_charge_micros
    with db.write() as conn:
        org = create_org(conn, "exact", NOW)
        top_up(conn, org.id, "routed", maximum, NOW)
        key, _ = create_key(conn, pepper=PEPPER, org_id=org.id, name="exact", policy=KeyPolicy(), now=NOW)
    with db.read() as conn:
        assert quote_request(conn, key, BODY, NOW)[0].admitted


@pytest.mark.parametrize("budget", ["budget_total_micros", "budget_daily_micros"])
def test_a_quote_is_not_admitted_when_a_key_budget_is_short(db: Database, budget: str) -> None:
    add_route(db)
    key = new_key(db, funded_micros=10_000_000, **{budget: 100})
    with db.read() as conn:
        quote, _ = quote_request(conn, key, BODY, NOW)
    assert not quote.admitted
    assert ("total" if budget == "budget_total_micros" else "daily") in quote.reason


def test_money_already_held_on_a_key_budget_counts_against_the_quote(db: Database) -> None:
    add_route(db)
    key = new_key(db, funded_micros=10_000_000, budget_total_micros=1_000_000)
    with db.read() as conn:
        maximum = quote_request(conn, key, BODY, NOW)[0].max_charge_micros
    with db.write() as conn:
        hold_budget(conn, key.id, key.policy, 1_000_000 - maximum + 1, NOW)
    with db.read() as conn:
        assert not quote_request(conn, key, BODY, NOW)[0].admitted


def test_an_official_key_is_quoted_on_official_routes_and_the_credit_wallet(db: Database) -> None:
    add_route(db, settlement="routed")
    official = add_route(db, settlement="official", prices=Prices(150_000, 600_000, 75_000))
    key = new_key(db, settlement="official")
    with db.read() as conn:
        quote, _ = quote_request(conn, key, BODY, NOW)
    assert quote.route.id == official.id
    assert quote.wallet_kind == "credit"
    assert not quote.admitted  # the credit wallet is empty


def test_quoting_a_model_without_a_route_unknown_or_not_allowed_says_who_is_at_fault(db: Database) -> None:
    key = new_key(db, funded_micros=10_000_000, allowed_models=("gpt-4o-mini", "gpt-4o"))
    add_route(db)
    with db.read() as conn:
        with pytest.raises(RouteError):
            quote_request(conn, key, {**BODY, "model": "gpt-4o"}, NOW)
        with pytest.raises(ModelError) as not_allowed:
            quote_request(conn, key, {**BODY, "model": "claude-sonnet-4-5"}, NOW)
        assert not_allowed.value.status_code == 403
    open_key = new_key_in_new_org(db)
    with db.read() as conn, pytest.raises(ModelError) as unknown:
        quote_request(conn, open_key, {**BODY, "model": "gpt-99"}, NOW)
    assert unknown.value.status_code == 404


def new_key_in_new_org(db: Database) -> KeyRecord:
    with db.write() as conn:
        org = create_org(conn, "other", NOW)
        key, _ = create_key(conn, pepper=PEPPER, org_id=org.id, name="open", policy=KeyPolicy(), now=NOW)
    return key


def test_an_embeddings_quote_has_no_output(db: Database) -> None:
    with db.write() as conn:
        create_route(
            conn,
            Route(
                id="",
                model="text-embedding-3-small",
                provider="simulated",
                base_url="",
                upstream_model="sim-embed",
                settlement="routed",
                prices=Prices(20_000, 0, 0),
                costs=Prices(10_000, 0, 0),
            ),
            NOW,
        )
    key = new_key(db, funded_micros=1_000_000)
    body = {"model": "text-embedding-3-small", "input": "glass keys"}
    with db.read() as conn:
        quote, _ = quote_request(conn, key, body, NOW, endpoint="embeddings")
        with pytest.raises(ModelError):
            quote_request(conn, key, body, NOW)  # an embedding model cannot serve chat
    assert quote.max_output_tokens == quote.estimated_output_tokens == 0
    assert quote.max_charge_micros == max_charge(quote.max_input_tokens, 0, Prices(20_000, 0, 0))
    assert quote.admitted
