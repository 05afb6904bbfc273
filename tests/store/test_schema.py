"""The schema check the CLI makes without Alembic agrees with Alembic, and tells a migrated database apart."""

from __future__ import annotations

from alembic.script import ScriptDirectory

from glasskey.store.database import Database
from glasskey.store.migrations import alembic_config, upgrade
from glasskey.store.schema import HEAD_REVISION, at_head, recorded_revisions


def test_the_head_known_in_code_is_alembics_one_head(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'glasskey.db'}")
    try:
        heads = ScriptDirectory.from_config(alembic_config(db)).get_heads()
    finally:
        db.dispose()
    assert len(heads) == 1, f"the migrations have {len(heads)} heads ({heads}): chain the newest after the others"
    assert heads == [HEAD_REVISION], (
        f"a migration was added: set HEAD_REVISION in src/glasskey/store/schema.py to {heads[0]!r}"
        " (the CLI takes a database recorded at HEAD_REVISION as fully migrated)"
    )


def test_a_database_is_at_head_only_once_migrated_to_it(database_url):
    db = Database(database_url)
    try:
        assert not at_head(db)  # never migrated: no alembic_version table at all
        upgrade(db, "0007")
        assert not at_head(db)
        upgrade(db)
        assert at_head(db)
        with db.read() as conn:
            assert recorded_revisions(conn) == {HEAD_REVISION}
    finally:
        db.dispose()
