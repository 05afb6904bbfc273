"""The model catalog: public model names with their official list prices per 1M tokens.

The shipped ``catalog.toml`` is loaded into the ``models`` table at start-up; a model whose
price an operator overrode keeps the override.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from sqlalchemy import Connection, select, update

from glasskey.errors import ModelError, shown
from glasskey.limits import PRICE_MAX_MICROS_PER_MTOK, check_range
from glasskey.money import dollars_to_micros
from glasskey.store.tables import models

VENDORS = ("openai", "anthropic", "gemini")


@dataclass(frozen=True)
class Prices:
    """Unit prices in micros per one million tokens."""

    input_per_mtok_micros: int
    output_per_mtok_micros: int
    cached_per_mtok_micros: int

    def as_dict(self) -> dict[str, int]:
        return {
            "input": self.input_per_mtok_micros,
            "output": self.output_per_mtok_micros,
            "cached": self.cached_per_mtok_micros,
        }


@dataclass(frozen=True)
class Model:
    name: str
    vendor: str
    kind: str
    official_prices: Prices
    max_output_tokens: int
    context_window_tokens: int
    price_date: str
    price_source: str
    price_overridden: bool


def shipped_catalog() -> dict[str, dict[str, Any]]:
    text = resources.files("glasskey.pricing").joinpath("catalog.toml").read_text()
    entries: dict[str, dict[str, Any]] = tomllib.loads(text)["models"]
    return entries


def _row_values(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "vendor": entry["vendor"],
        "kind": entry["kind"],
        "input_price_per_mtok_micros": dollars_to_micros(entry["input"]),
        "output_price_per_mtok_micros": dollars_to_micros(entry["output"]),
        "cached_price_per_mtok_micros": dollars_to_micros(entry["cached"]),
        "max_output_tokens": entry["max_output_tokens"],
        "context_window_tokens": entry["context_window_tokens"],
        "price_date": entry["price_date"],
        "price_source": f"{entry['vendor']} list price",
        "price_overridden": False,
    }


def sync_catalog(conn: Connection) -> int:
    """Insert new models and refresh prices that no operator overrode; returns rows written."""
    existing = {
        row.name: row.price_overridden for row in conn.execute(select(models.c.name, models.c.price_overridden))
    }
    written = 0
    for name, entry in shipped_catalog().items():
        values = _row_values(name, entry)
        if name not in existing:
            conn.execute(models.insert().values(values))
            written += 1
        elif not existing[name]:
            conn.execute(update(models).where(models.c.name == name).values(values))
            written += 1
    return written


def _model(row: Any) -> Model:
    return Model(
        name=row.name,
        vendor=row.vendor,
        kind=row.kind,
        official_prices=Prices(
            row.input_price_per_mtok_micros,
            row.output_price_per_mtok_micros,
            row.cached_price_per_mtok_micros,
        ),
        max_output_tokens=row.max_output_tokens,
        context_window_tokens=row.context_window_tokens,
        price_date=row.price_date,
        price_source=row.price_source,
        price_overridden=row.price_overridden,
    )


def get_model(conn: Connection, name: str) -> Model:
    row = conn.execute(select(models).where(models.c.name == name)).first()
    if row is None:
        raise ModelError(f"The model `{shown(name)}` does not exist in this gateway's catalog", param="model")
    return _model(row)


def list_models(conn: Connection) -> list[Model]:
    return [_model(row) for row in conn.execute(select(models).order_by(models.c.vendor, models.c.name))]


def check_prices(prices: Prices, param: str) -> None:
    """Refuse a negative unit price or one above ``PRICE_MAX_MICROS_PER_MTOK``."""
    for part, value in prices.as_dict().items():
        check_range(f"{param}.{part}", value, PRICE_MAX_MICROS_PER_MTOK)


def set_official_prices(conn: Connection, name: str, prices: Prices, *, price_date: str, source: str) -> Model:
    """An operator's override of a model's official price; kept across catalog syncs."""
    get_model(conn, name)
    check_prices(prices, "price_per_mtok_micros")
    conn.execute(
        update(models)
        .where(models.c.name == name)
        .values(
            input_price_per_mtok_micros=prices.input_per_mtok_micros,
            output_price_per_mtok_micros=prices.output_per_mtok_micros,
            cached_price_per_mtok_micros=prices.cached_per_mtok_micros,
            price_date=price_date,
            price_source=source,
            price_overridden=True,
        )
    )
    return get_model(conn, name)
