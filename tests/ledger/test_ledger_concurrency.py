"""Real concurrency against the floor: many threads race for one wallet and one key budget.

Each test runs on SQLite and PostgreSQL, once with every thread sharing one ``Database`` and
once with four separate ``Database`` objects on the same database, as separate gateway
processes would (on SQLite a ``Database`` queues its own writers on a lock, so only separate
objects make the file's own locking do the work).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import Connection

from conftest_helpers import NOW
from glasskey.errors import BudgetError
from glasskey.keys.budget import TOTAL, get_spend, hold_budget
from glasskey.keys.policy import KeyPolicy
from glasskey.keys.service import KeyRecord, create_key
from glasskey.ledger import (
    SYSTEM_REVENUE,
    InsufficientFunds,
    audit,
    create_pending,
    ensure_system_accounts,
    get_balance,
)
from glasskey.orgs.service import create_org, get_wallet, top_up
from glasskey.store.database import Database

HOLD_MICROS = 7_919
FUNDED_HOLDS = 50
ATTEMPTS = 200
WORKERS = 32
BUDGETED_HOLDS = 10
BUDGET_ATTEMPTS = 50
PEPPER = "pepper-for-tests-0123456789abcdef"


@pytest.fixture
def setup_db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    database.create_all()
    with database.write() as conn:
        ensure_system_accounts(conn, NOW)
    yield database
    database.dispose()


@pytest.fixture(params=["shared", "separate"])
def databases(request: pytest.FixtureRequest, setup_db: Database, database_url: str) -> Iterator[list[Database]]:
    """The databases the racing threads use: the setup one, or four of their own."""
    if request.param == "shared":
        yield [setup_db]
        return
    separate = [Database(database_url) for _ in range(4)]
    yield separate
    for database in separate:
        database.dispose()


def race(databases: list[Database], attempts: int, work: Callable[[Connection], object]) -> Counter[str]:
    """Run ``work`` in ``attempts`` write transactions from many threads; count the outcomes."""

    def one(index: int) -> str:
        try:
            with databases[index % len(databases)].write() as conn:
                work(conn)
        except InsufficientFunds:
            return "insufficient"
        except BudgetError:
            return "over budget"
        return "ok"

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        # Any other exception re-raises here and fails the test.
        return Counter(pool.map(one, range(attempts)))


def funded_wallet(db: Database, amount_micros: int) -> tuple[str, str]:
    with db.write() as conn:
        org = create_org(conn, "racers", NOW)
        top_up(conn, org.id, "routed", amount_micros, NOW)
        return org.id, get_wallet(conn, org.id, "routed").account_id


def hold_on(account_id: str) -> Callable[[Connection], object]:
    def work(conn: Connection) -> object:
        return create_pending(
            conn,
            debit_account_id=account_id,
            credit_account_id=SYSTEM_REVENUE["routed"],
            amount_micros=HOLD_MICROS,
            now=NOW,
            expires_at=NOW + timedelta(minutes=15),
        )

    return work


def test_racing_holds_never_take_a_wallet_below_its_floor(setup_db: Database, databases: list[Database]) -> None:
    _, wallet = funded_wallet(setup_db, FUNDED_HOLDS * HOLD_MICROS)
    outcomes = race(databases, ATTEMPTS, hold_on(wallet))
    assert outcomes == Counter({"ok": FUNDED_HOLDS, "insufficient": ATTEMPTS - FUNDED_HOLDS})
    with setup_db.read() as conn:
        balance = get_balance(conn, wallet)
        report = audit(conn)
    assert balance.available_micros == 0
    assert balance.held_micros == FUNDED_HOLDS * HOLD_MICROS
    assert report.ok, report.problems


def budgeted_key(db: Database, budget_total_micros: int) -> KeyRecord:
    with db.write() as conn:
        org = create_org(conn, "budgeted", NOW)
        top_up(conn, org.id, "routed", FUNDED_HOLDS * HOLD_MICROS, NOW)
        key, _ = create_key(
            conn,
            pepper=PEPPER,
            org_id=org.id,
            name="racer",
            policy=KeyPolicy(budget_total_micros=budget_total_micros),
            now=NOW,
        )
    return key


def test_racing_requests_never_pass_a_keys_total_budget(setup_db: Database, databases: list[Database]) -> None:
    key = budgeted_key(setup_db, BUDGETED_HOLDS * HOLD_MICROS)
    outcomes = race(databases, BUDGET_ATTEMPTS, lambda conn: hold_budget(conn, key.id, key.policy, HOLD_MICROS, NOW))
    assert outcomes == Counter({"ok": BUDGETED_HOLDS, "over budget": BUDGET_ATTEMPTS - BUDGETED_HOLDS})
    with setup_db.read() as conn:
        total = get_spend(conn, key.id, TOTAL)
        today = get_spend(conn, key.id, "2026-11-27")
    assert total.held_micros == BUDGETED_HOLDS * HOLD_MICROS
    assert today.held_micros == BUDGETED_HOLDS * HOLD_MICROS


def test_the_budget_and_the_wallet_hold_together_or_not_at_all(setup_db: Database, databases: list[Database]) -> None:
    """As the gateway does: the key's budget and the wallet hold in one transaction."""
    key = budgeted_key(setup_db, BUDGETED_HOLDS * HOLD_MICROS)
    with setup_db.read() as conn:
        wallet = get_wallet(conn, key.org_id, "routed").account_id
    hold = hold_on(wallet)

    def work(conn: Connection) -> object:
        hold_budget(conn, key.id, key.policy, HOLD_MICROS, NOW)
        return hold(conn)

    outcomes = race(databases, BUDGET_ATTEMPTS, work)
    assert outcomes == Counter({"ok": BUDGETED_HOLDS, "over budget": BUDGET_ATTEMPTS - BUDGETED_HOLDS})
    with setup_db.read() as conn:
        assert get_spend(conn, key.id, TOTAL).held_micros == BUDGETED_HOLDS * HOLD_MICROS
        assert get_balance(conn, wallet).held_micros == BUDGETED_HOLDS * HOLD_MICROS
        report = audit(conn)
    assert report.ok, report.problems
