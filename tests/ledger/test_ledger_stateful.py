"""The ledger against a pure-Python model, driven by random sequences of money movements.

Two orgs with two wallets each; top-ups (with idempotency keys from a small set, so replays and
conflicts happen), holds, posts, voids, and a clock that moves and sweeps expired holds. After
every step each wallet's posted, held and available balances equal the model's, no wallet is
below its floor, and the audit is clean.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from sqlalchemy import Connection

from conftest_helpers import NOW, postgres_schema_url, require_postgres
from glasskey.errors import ClientError, InvariantViolation
from glasskey.ledger import (
    SYSTEM_REVENUE,
    InsufficientFunds,
    Transfer,
    TransferNotPending,
    audit,
    create_pending,
    ensure_system_accounts,
    expire_pending,
    get_balance,
    post_pending,
    void_pending,
)
from glasskey.orgs.service import create_org, top_up, wallet_account_id
from glasskey.store.database import Database

IDEMPOTENCY_KEYS = ["a", "b", "c"]
TOP_UP_AMOUNTS = [1_000, 5_000, 20_000]
ORG_NAMES = ("org-one", "org-two")
WALLETS = [(org, kind) for org in ORG_NAMES for kind in ("credit", "routed")]


@dataclass(frozen=True)
class ModelHold:
    account_id: str
    amount_micros: int
    expires_at: datetime


class LedgerMachine(RuleBasedStateMachine):
    """Subclasses say which database to use through ``open_database``."""

    def __init__(self) -> None:
        super().__init__()
        self.db, self._close = self.open_database()
        self.db.create_all()
        self.now = NOW
        self.accounts: list[str] = []
        self.wallet_of: dict[str, tuple[str, str]] = {}  # account -> (org id, wallet kind)
        with self.db.write() as conn:
            ensure_system_accounts(conn, NOW)
            org_ids = {name: create_org(conn, name, NOW).id for name in ORG_NAMES}
            for org_name, kind in WALLETS:
                account = wallet_account_id(conn, org_ids[org_name], kind)
                self.accounts.append(account)
                self.wallet_of[account] = (org_ids[org_name], kind)
        self.posted = dict.fromkeys(self.accounts, 0)
        # Transfer ids are random: rules draw them by position in creation order, so a replayed
        # example makes the same choices.
        self.holds: dict[str, ModelHold] = {}
        self.settled: list[str] = []
        self.used_keys: dict[str, tuple[str, int, str]] = {}  # key -> (account, amount, transfer id)

    def open_database(self) -> tuple[Database, Iterator[str] | Path]:
        directory = Path(tempfile.mkdtemp(prefix="glasskey-stateful-"))
        return Database(f"sqlite:///{directory / 'ledger.db'}"), directory

    def teardown(self) -> None:
        self.db.dispose()
        if isinstance(self._close, Path):
            shutil.rmtree(self._close, ignore_errors=True)
        else:
            next(self._close, None)  # runs the generator's cleanup: drops the schema

    # -- the model ------------------------------------------------------------------------

    def held(self, account: str) -> int:
        return sum(h.amount_micros for h in self.holds.values() if h.account_id == account)

    def available(self, account: str) -> int:
        return self.posted[account] - self.held(account)

    # -- the rules ------------------------------------------------------------------------

    @rule(
        wallet=st.integers(0, len(WALLETS) - 1),
        amount=st.sampled_from(TOP_UP_AMOUNTS),
        key=st.one_of(st.none(), st.sampled_from(IDEMPOTENCY_KEYS)),
    )
    def top_up(self, wallet: int, amount: int, key: str | None) -> None:
        account = self.accounts[wallet]
        org_id, kind = self.wallet_of[account]
        previous = self.used_keys.get(key) if key else None
        if previous is not None and previous[:2] != (account, amount):
            with pytest.raises(ClientError) as caught, self.db.write() as conn:
                top_up(conn, org_id, kind, amount, self.now, idempotency_key=key)
            assert caught.value.status_code == 409
            return
        with self.db.write() as conn:
            transfer = top_up(conn, org_id, kind, amount, self.now, idempotency_key=key)
        if previous is not None:
            assert transfer.replayed
            assert transfer.id == previous[2]
            return
        assert not transfer.replayed
        self.posted[account] += amount
        if key:
            self.used_keys[key] = (account, amount, transfer.id)

    @precondition(lambda self: bool(self.used_keys))
    @rule(data=st.data())
    def replay_top_up(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.used_keys)))
        account, amount, transfer_id = self.used_keys[key]
        org_id, kind = self.wallet_of[account]
        with self.db.write() as conn:
            transfer = top_up(conn, org_id, kind, amount, self.now, idempotency_key=key)
        assert transfer.replayed
        assert transfer.id == transfer_id

    @rule(wallet=st.integers(0, len(WALLETS) - 1), data=st.data(), ttl=st.integers(1, 600))
    def hold(self, wallet: int, data: st.DataObject, ttl: int) -> None:
        account = self.accounts[wallet]
        amount = data.draw(st.integers(0, max(self.available(account), 0)))
        with self.db.write() as conn:
            transfer = self._create_hold(conn, account, amount, self.now + timedelta(seconds=ttl))
        self.holds[transfer.id] = ModelHold(account, amount, self.now + timedelta(seconds=ttl))

    @rule(wallet=st.integers(0, len(WALLETS) - 1), excess=st.integers(1, 5_000))
    def hold_above_available(self, wallet: int, excess: int) -> None:
        account = self.accounts[wallet]
        with pytest.raises(InsufficientFunds), self.db.write() as conn:
            self._create_hold(conn, account, self.available(account) + excess, self.now + timedelta(minutes=1))

    def _create_hold(self, conn: Connection, account: str, amount: int, expires_at: datetime) -> Transfer:
        settlement = "official" if self.wallet_of[account][1] == "credit" else "routed"
        return create_pending(
            conn,
            debit_account_id=account,
            credit_account_id=SYSTEM_REVENUE[settlement],
            amount_micros=amount,
            now=self.now,
            expires_at=expires_at,
            kind="adjustment",
        )

    @precondition(lambda self: bool(self.holds))
    @rule(data=st.data())
    def post(self, data: st.DataObject) -> None:
        transfer_id = data.draw(st.sampled_from(list(self.holds)))
        pending = self.holds[transfer_id]
        amount = data.draw(st.integers(0, pending.amount_micros))
        with self.db.write() as conn:
            posted = post_pending(conn, transfer_id, amount, self.now)
        assert posted.posted_amount_micros == amount
        del self.holds[transfer_id]
        self.settled.append(transfer_id)
        self.posted[pending.account_id] -= amount

    @precondition(lambda self: bool(self.holds))
    @rule(data=st.data(), excess=st.integers(1, 1_000))
    def post_above_the_hold(self, data: st.DataObject, excess: int) -> None:
        transfer_id = data.draw(st.sampled_from(list(self.holds)))
        with pytest.raises(InvariantViolation), self.db.write() as conn:
            post_pending(conn, transfer_id, self.holds[transfer_id].amount_micros + excess, self.now)

    @precondition(lambda self: bool(self.holds))
    @rule(data=st.data())
    def void(self, data: st.DataObject) -> None:
        transfer_id = data.draw(st.sampled_from(list(self.holds)))
        with self.db.write() as conn:
            void_pending(conn, transfer_id, self.now)
        del self.holds[transfer_id]
        self.settled.append(transfer_id)

    @precondition(lambda self: bool(self.settled))
    @rule(data=st.data(), post=st.booleans())
    def settle_again(self, data: st.DataObject, post: bool) -> None:
        transfer_id = data.draw(st.sampled_from(self.settled))
        with pytest.raises(TransferNotPending), self.db.write() as conn:
            if post:
                post_pending(conn, transfer_id, 0, self.now)
            else:
                void_pending(conn, transfer_id, self.now)

    @rule(seconds=st.integers(0, 300))
    def advance_clock_and_expire(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)
        due = [tid for tid, h in self.holds.items() if h.expires_at <= self.now]
        with self.db.write() as conn:
            expired = expire_pending(conn, self.now)
        assert {t.id for t in expired} == set(due)
        assert all(t.status == "expired" for t in expired)
        for transfer_id in due:
            del self.holds[transfer_id]
            self.settled.append(transfer_id)

    # -- the invariants -------------------------------------------------------------------

    @invariant()
    def balances_match_the_model_and_the_audit_is_clean(self) -> None:
        with self.db.read() as conn:
            for account in self.accounts:
                balance = get_balance(conn, account)
                expected = (self.posted[account], self.held(account), self.available(account))
                assert (balance.posted_micros, balance.held_micros, balance.available_micros) == expected
                assert balance.available_micros >= (balance.floor_micros or 0) == 0
            report = audit(conn)
        assert report.ok, report.problems


class PostgresLedgerMachine(LedgerMachine):
    def open_database(self) -> tuple[Database, Iterator[str] | Path]:
        schema_urls = postgres_schema_url()
        return Database(next(schema_urls)), schema_urls


def test_ledger_matches_its_model_on_sqlite() -> None:
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=40,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def test_ledger_matches_its_model_on_postgresql() -> None:
    require_postgres()
    run_state_machine_as_test(
        PostgresLedgerMachine,
        settings=settings(
            max_examples=10,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
