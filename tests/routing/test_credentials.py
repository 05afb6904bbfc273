"""Route credentials sealed at rest: sealing, opening, masking, rotation, and the stored rows."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text

from conftest_helpers import NOW
from glasskey.pricing.catalog import Prices, sync_catalog
from glasskey.routing.credentials import (
    CredentialUnopenable,
    CredentialVault,
    is_sealed,
    reseal_stored_credentials,
    seal_stored_credentials,
    shown_credential,
)
from glasskey.routing.routes import Route, create_route, get_route
from glasskey.store.database import Database
from glasskey.store.migrations import alembic_config, upgrade

CANARY = "sk-canary-7f3a9c1e5b2d4f6a8c0e"
OLD_KEY, NEW_KEY = CredentialVault.generate_key(), CredentialVault.generate_key()


def _route(route_id: str, credential: str | None) -> Route:
    prices = Prices(1_000_000, 2_000_000, 500_000)
    return Route(
        id=route_id,
        model="gpt-4o-mini",
        provider="openai",
        base_url="https://api.openai.com/v1",
        upstream_model="gpt-4o-mini",
        settlement="routed",
        prices=prices,
        costs=prices,
        credential=credential,
    )


def _dump(db: Database, database_url: str) -> str:
    """Everything a reader of the database sees: the raw file on SQLite, every routes row on PostgreSQL."""
    if database_url.startswith("sqlite"):
        db.dispose()  # the WAL is checkpointed into the file
        path = Path(database_url.removeprefix("sqlite:///"))
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*")).decode("latin-1")
    with db.read() as conn:
        return repr(conn.execute(text("SELECT * FROM routes")).all())


def test_a_sealed_credential_opens_to_itself_and_shows_only_its_mask() -> None:
    vault = CredentialVault([NEW_KEY])
    stored = vault.seal(CANARY)
    assert stored is not None and is_sealed(stored)
    assert CANARY not in stored and CANARY[3:] not in stored
    assert vault.open(stored) == CANARY
    assert shown_credential(stored) == "sk-…8c0e"
    assert vault.seal(None) is None and vault.open(None) is None


def test_an_env_reference_is_sealed_and_opens_to_the_reference() -> None:
    vault = CredentialVault([NEW_KEY])
    stored = vault.seal("env:OPENAI_API_KEY")
    assert "OPENAI_API_KEY" not in (stored or "")
    assert vault.open(stored) == "env:OPENAI_API_KEY"


def test_a_credential_stored_before_sealing_opens_as_itself() -> None:
    assert CredentialVault([NEW_KEY]).open(CANARY) == CANARY
    assert shown_credential(CANARY) == "sk-…8c0e"


def test_a_key_that_did_not_seal_it_cannot_open_it() -> None:
    stored = CredentialVault([OLD_KEY]).seal(CANARY)
    with pytest.raises(CredentialUnopenable) as caught:
        CredentialVault([NEW_KEY]).open(stored)
    assert CANARY not in caught.value.message


def test_during_a_rotation_the_previous_key_still_opens_and_reseal_moves_to_the_new_key() -> None:
    stored = CredentialVault([OLD_KEY]).seal(CANARY)
    rotating = CredentialVault([NEW_KEY, OLD_KEY])
    assert rotating.open(stored) == CANARY
    resealed = rotating.reseal(stored)
    assert shown_credential(resealed) == shown_credential(stored)
    assert CredentialVault([NEW_KEY]).open(resealed) == CANARY
    with pytest.raises(CredentialUnopenable):
        CredentialVault([OLD_KEY]).open(resealed)


def test_unsealed_rows_are_sealed_and_never_readable_in_the_database(db: Database, database_url: str) -> None:
    vault = CredentialVault([NEW_KEY])
    with db.write() as conn:
        create_route(conn, _route("rt-plain", CANARY), NOW)  # as a row from before 0003
        create_route(conn, _route("rt-none", None), NOW)
        assert seal_stored_credentials(conn, vault) == 1
        assert seal_stored_credentials(conn, vault) == 0  # sealed rows stay as they are
    with db.read() as conn:
        stored = get_route(conn, "rt-plain").credential
        assert get_route(conn, "rt-none").credential is None
    assert vault.open(stored) == CANARY
    assert CANARY not in _dump(db, database_url)


def test_rotation_reseals_every_row_or_none(db: Database, database_url: str) -> None:
    old, rotating = CredentialVault([OLD_KEY]), CredentialVault([NEW_KEY, OLD_KEY])
    with db.write() as conn:
        create_route(conn, _route("rt-a", old.seal(CANARY)), NOW)
        create_route(conn, _route("rt-b", old.seal("env:UPSTREAM_KEY")), NOW)
        create_route(conn, _route("rt-c", CANARY + "-plain"), NOW)
    with db.write() as conn:
        assert reseal_stored_credentials(conn, rotating) == 3
    new_only = CredentialVault([NEW_KEY])
    with db.read() as conn:
        opened = {rid: new_only.open(get_route(conn, rid).credential) for rid in ("rt-a", "rt-b", "rt-c")}
    assert opened == {"rt-a": CANARY, "rt-b": "env:UPSTREAM_KEY", "rt-c": CANARY + "-plain"}

    # A vault that opens none of them changes nothing and names the routes.
    before = _dump(db, database_url)
    with pytest.raises(CredentialUnopenable, match="rt-a, rt-b, rt-c"), db.write() as conn:
        reseal_stored_credentials(conn, CredentialVault([CredentialVault.generate_key()]))
    assert _dump(db, database_url) == before
    assert CANARY not in before


def test_migration_0003_seals_existing_plaintext_rows(database_url: str) -> None:
    db = Database(database_url)
    try:
        upgrade(db, "0002")
        with db.write() as conn:
            sync_catalog(conn)
            create_route(conn, _route("rt-old", CANARY), NOW)
        vault = CredentialVault([NEW_KEY])
        upgrade(db, vault=vault)
        with db.read() as conn:
            stored = get_route(conn, "rt-old").credential
        assert is_sealed(stored) and vault.open(stored) == CANARY
        assert CANARY not in _dump(db, database_url)

        # Downgrading opens them again, and refuses to without the key.
        with pytest.raises(RuntimeError, match="vault"):
            command.downgrade(alembic_config(db), "0002")
        config = alembic_config(db)
        config.attributes["credential_vault"] = vault
        command.downgrade(config, "0002")
        with db.read() as conn:
            assert get_route(conn, "rt-old").credential == CANARY
    finally:
        db.dispose()
