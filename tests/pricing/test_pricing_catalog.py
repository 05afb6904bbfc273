"""The shipped model catalog, its sync into the database, and operators' price overrides."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import update

from glasskey.errors import ModelError
from glasskey.money import dollars_to_micros
from glasskey.pricing.catalog import (
    VENDORS,
    Prices,
    get_model,
    list_models,
    set_official_prices,
    shipped_catalog,
    sync_catalog,
)
from glasskey.store.database import Database
from glasskey.store.tables import models

OVERRIDE = Prices(input_per_mtok_micros=111_111, output_per_mtok_micros=222_222, cached_per_mtok_micros=55_555)


def test_the_catalog_ships_chat_models_of_every_vendor() -> None:
    catalog = shipped_catalog()
    for vendor in VENDORS:
        chat_models = [name for name, entry in catalog.items() if entry["vendor"] == vendor and entry["kind"] == "chat"]
        assert chat_models, f"no {vendor} chat model in the catalog"
    assert {"gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-flash"} <= set(catalog)


def test_every_shipped_price_is_positive_exact_and_dated() -> None:
    for name, entry in shipped_catalog().items():
        assert dollars_to_micros(entry["input"]) > 0, name
        if entry["kind"] == "chat":
            assert dollars_to_micros(entry["output"]) > 0, name
            assert 0 < dollars_to_micros(entry["cached"]) <= dollars_to_micros(entry["input"]), name
            assert entry["max_output_tokens"] > 0, name
        assert entry["context_window_tokens"] > 0, name
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", entry["price_date"]), name


def test_the_synced_catalog_holds_every_shipped_model_at_its_list_price(db: Database) -> None:
    with db.read() as conn:
        listed = {model.name: model for model in list_models(conn)}
        mini = get_model(conn, "gpt-4o-mini")
    assert set(listed) == set(shipped_catalog())
    assert mini.official_prices == Prices(150_000, 600_000, 75_000)
    assert mini.vendor == "openai"
    assert mini.price_source == "openai list price"
    assert not mini.price_overridden


def test_an_unknown_model_is_a_model_error(db: Database) -> None:
    with pytest.raises(ModelError) as caught, db.read() as conn:
        get_model(conn, "gpt-99")
    assert caught.value.source == "model"
    assert caught.value.status_code == 404


def test_an_operators_override_survives_the_next_catalog_sync(db: Database) -> None:
    with db.write() as conn:
        overridden = set_official_prices(conn, "gpt-4o-mini", OVERRIDE, price_date="2026-01-01", source="contract")
    assert overridden.price_overridden
    with db.write() as conn:
        written = sync_catalog(conn)
    assert written == len(shipped_catalog()) - 1
    with db.read() as conn:
        mini = get_model(conn, "gpt-4o-mini")
    assert mini.official_prices == OVERRIDE
    assert (mini.price_date, mini.price_source, mini.price_overridden) == ("2026-01-01", "contract", True)


def test_a_sync_restores_a_list_price_nobody_overrode(db: Database) -> None:
    with db.write() as conn:
        conn.execute(update(models).where(models.c.name == "gpt-4o").values(input_price_per_mtok_micros=1))
        sync_catalog(conn)
    with db.read() as conn:
        assert get_model(conn, "gpt-4o").official_prices.input_per_mtok_micros == 2_500_000


def test_overriding_an_unknown_model_is_refused(db: Database) -> None:
    with pytest.raises(ModelError), db.write() as conn:
        set_official_prices(conn, "gpt-99", OVERRIDE, price_date="2026-01-01", source="contract")
