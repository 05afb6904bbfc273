"""The writer's kept transaction: begun on the driver on SQLite, joined by SQLAlchemy statements run in it."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection, insert, select

from conftest_helpers import NOW
from glasskey.store.database import Database
from glasskey.store.driver import DriverStatement
from glasskey.store.tables import UTCDateTime, orgs

INSERT_ORG = DriverStatement(
    "INSERT INTO orgs (id, name, created_at) VALUES (:id, :name, :created_at)", {"created_at": UTCDateTime()}
)


def names(db: Database) -> list[str]:
    with db.read() as conn:
        return sorted(conn.scalars(select(orgs.c.name)))


def both_ways(conn: Connection) -> None:
    """A driver statement, then a SQLAlchemy one that reads it back and writes beside it."""
    INSERT_ORG.execute(conn, {"id": "org_driver", "name": "driver", "created_at": NOW})
    assert conn.scalar(select(orgs.c.name).where(orgs.c.id == "org_driver")) == "driver"
    conn.execute(insert(orgs).values(id="org_sqlalchemy", name="sqlalchemy", created_at=NOW))


def test_a_kept_transaction_commits_its_driver_and_sqlalchemy_statements_together(db: Database) -> None:
    with db.engine.connect() as conn:
        for round_ in range(2):  # the connection is kept: a second transaction on it works alike
            with db.kept_transaction(conn):
                if round_ == 0:
                    both_ways(conn)
                else:
                    INSERT_ORG.execute(conn, {"id": "org_again", "name": "again", "created_at": NOW})
            assert not conn.in_transaction()
    assert names(db) == ["again", "driver", "sqlalchemy"]


@pytest.mark.parametrize("sqlalchemy_joined", [True, False])
def test_a_kept_transaction_that_fails_leaves_nothing(db: Database, sqlalchemy_joined: bool) -> None:
    with db.engine.connect() as conn:
        with pytest.raises(RuntimeError, match="a bug"), db.kept_transaction(conn):
            if sqlalchemy_joined:
                both_ways(conn)
            else:
                INSERT_ORG.execute(conn, {"id": "org_driver", "name": "driver", "created_at": NOW})
            raise RuntimeError("a bug")
        assert not conn.in_transaction()
        with db.kept_transaction(conn):  # and the connection goes on
            INSERT_ORG.execute(conn, {"id": "org_after", "name": "after", "created_at": NOW})
    assert names(db) == ["after"]
