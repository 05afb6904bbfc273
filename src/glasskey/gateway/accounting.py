"""The money of one request, as two commands of the group-commit writer: a ``Hold``, then a ``Settlement``.

Before any upstream call, a ``Hold`` reserves the request's maximum charge on the key's budgets
and on its wallet, refused by the debiting statement itself below the wallet's floor. After the
call, a ``Settlement`` posts the actual charge (never above the hold), releases the rest, moves the
key's budget from held to spent and writes the receipt, all in one transaction: the receipt's
charge and the ledger's posted charge cannot disagree.

Each command has the two phases of ``store.writer.Write``: ``send(batch)`` runs or sends its
statements, ``finish(batch)`` reads their answers and returns what happened, or raises the refusal
(``WalletError``, ``BudgetError``) having left nothing behind. Both can run again in a transaction
of their own when their batch failed for another write's sake: every id is chosen when the command
is made, and ``send`` starts afresh. Neither touches the request's state: the lifecycle reads what
they return, on its own event loop.

A hold may carry a ``Precondition``: a check its caller needs true when the money is reserved
(the research runner's: the job is still this process's), run first in the hold's own
transaction. A check made in a transaction of its own before the hold would leave a window
between them; made here, with whatever row lock it takes held to the hold's commit, it cannot.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from glasskey.errors import BudgetError, GlasskeyError, NotFound
from glasskey.gateway.instances import has_receipt
from glasskey.gateway.kept_answers import keep_answer
from glasskey.keys.budget import day_period, hold_budget, release_budget_hold, settle_budget
from glasskey.keys.policy import KeyPolicy
from glasskey.ledger import (
    POSTED,
    VOIDED,
    CreatePending,
    InsufficientFunds,
    ResolvePending,
    TransferNotPending,
    create_posted,
    get_balance,
    pending_transfer,
)
from glasskey.money import format_micros
from glasskey.receipts.records import insert_receipt_row
from glasskey.store.batch import Batch


class Precondition(Protocol):
    """A check run first in a ``Hold``'s own transaction, answered now (``batch.conn``): ``None``
    lets the hold go on; an error refuses it, and nothing else of the hold is written. Locks it
    takes are held until the hold's transaction ends."""

    def check(self, batch: Batch) -> GlasskeyError | None: ...


@dataclass(frozen=True)
class Held:
    """What a request holds once its ``Hold`` has finished."""

    transfer_id: str
    amount_micros: int
    budget_period: str
    wallet_account_id: str
    revenue_account_id: str
    key_id: str


class Hold:
    """Reserve ``amount_micros`` on the key's budgets and its wallet, until the settlement or the sweep."""

    def __init__(
        self,
        *,
        key_id: str,
        policy: KeyPolicy,
        wallet_kind: str,
        wallet_account_id: str,
        revenue_account_id: str,
        amount_micros: int,
        now: datetime,
        expires_at: datetime,
        request_id: str,
        memo: str,
        instance_id: str | None = None,
        precondition: Precondition | None = None,
    ) -> None:
        self.key_id = key_id
        self.precondition = precondition
        self.policy = policy
        self.wallet_kind = wallet_kind
        self.amount_micros = amount_micros
        self.now = now
        self.day = day_period(now)
        self.transfer = pending_transfer(
            debit_account_id=wallet_account_id,
            credit_account_id=revenue_account_id,
            amount_micros=amount_micros,
            now=now,
            expires_at=expires_at,
            request_id=request_id,
            key_id=key_id,
            budget_period=self.day,
            memo=memo,
            # Whose hold it is: if this process dies, the next one voids it at once (gateway.instances).
            instance_id=instance_id,
        )
        self._create = CreatePending(self.transfer)
        self._refusal: GlasskeyError | None = None

    def send(self, batch: Batch) -> None:
        self._create = CreatePending(self.transfer)
        self._refusal = None
        if self.precondition is not None:
            # Before anything is reserved: a refused precondition leaves nothing to give back.
            self._refusal = self.precondition.check(batch)
            if self._refusal is not None:
                return
        # The budget first: a checked budget is one conditional statement, answered now, and a
        # refusal there spares the wallet's statement altogether.
        try:
            hold_budget(batch, self.key_id, self.policy, self.amount_micros, self.now)
        except BudgetError as refusal:
            self._refusal = refusal
            return
        self._create.send(batch)

    def finish(self, batch: Batch) -> Held:
        if self._refusal is not None:
            raise self._refusal
        try:
            transfer = self._create.finish(batch)
        except GlasskeyError as refusal:
            # The wallet said no: give back the budget just taken, so the refusal leaves nothing.
            release_budget_hold(batch, self.key_id, self.policy, self.day, self.amount_micros)
            if not isinstance(refusal, InsufficientFunds):
                raise
            wallet = self.transfer.debit_account_id
            available = get_balance(batch.conn, wallet).available_micros
            raise InsufficientFunds(
                f"The {self.wallet_kind} wallet has ${format_micros(available)} available;"
                f" this request may cost up to ${format_micros(self.amount_micros)}."
                " Top up the wallet or lower max_tokens.",
                code="insufficient_balance",
            ) from None
        return Held(
            transfer_id=transfer.id,
            amount_micros=transfer.amount_micros,
            budget_period=self.day,
            wallet_account_id=transfer.debit_account_id,
            revenue_account_id=transfer.credit_account_id,
            key_id=self.key_id,
        )


@dataclass(frozen=True)
class Settled:
    """What a ``Settlement`` charged, the transfer that carries it, and what happened to the hold."""

    charge_micros: int
    transfer_id: str | None
    flags: tuple[str, ...] = ()


class Settlement:
    """Post ``charge_micros`` of the hold (at most all of it) or void it, and write the receipt.

    ``receipt_row`` is the receipt as the request ends it (``Receipt.row()``); the settlement fills in
    what only the ledger knows: the final charge, the transfer id and the flags of a lost hold.
    """

    def __init__(
        self,
        held: Held | None,
        charge_micros: int,
        receipt_row: dict[str, Any],
        now: datetime,
        *,
        answer: dict[str, Any] | None = None,
    ) -> None:
        if held is not None and charge_micros > held.amount_micros:
            raise ValueError("a charge is capped at its hold before it is settled")
        self.held = held
        self.charge_micros = charge_micros if held is not None else 0
        self.receipt_row = receipt_row
        self.now = now
        # The answer body to keep with the charge (``gateway.kept_answers``), or None.
        self.answer = answer
        self._resolve: ResolvePending | None = None
        self._receipt_written = False

    def send(self, batch: Batch) -> None:
        self._receipt_written = False
        held = self.held
        if held is None:
            self._resolve = None
            return
        if self.charge_micros > 0:
            self._resolve = ResolvePending(held.transfer_id, POSTED, self.charge_micros, self.now)
        else:
            self._resolve = ResolvePending(held.transfer_id, VOIDED, None, self.now)
        self._resolve.send(batch)

    def finish(self, batch: Batch) -> Settled:
        settled = Settled(0, None) if self._resolve is None else self._settle(batch, self._resolve)
        if self._receipt_written:
            return settled
        flags = list(dict.fromkeys([*self.receipt_row["flags"], *settled.flags]))
        row = {**self.receipt_row, "charge_micros": settled.charge_micros, "transfer_id": settled.transfer_id}
        insert_receipt_row(batch, {**row, "flags": flags})
        if self.answer is not None:
            keep_answer(batch, self.receipt_row["request_id"], self.answer, self.now)
        return settled

    def _settle(self, batch: Batch, resolve: ResolvePending) -> Settled:
        held = self.held
        assert held is not None  # a resolve is sent only for a hold
        try:
            resolve.finish(batch)
        except NotFound:
            # The hold's batch failed to commit, taking its budget hold with it.
            return self._charge_without_hold(batch, held, "hold_lost_before_settlement")
        except TransferNotPending:
            # The sweep released both the wallet hold and the budget hold already, or another
            # process took this one for dead (gateway.instances) and wrote the request its
            # ``interrupted`` receipt: that receipt stands, and nothing is charged beside it.
            if has_receipt(batch.conn, self.receipt_row["request_id"]):
                self._receipt_written = True
                return Settled(0, held.transfer_id, ("interrupted_before_settlement",))
            return self._charge_without_hold(batch, held, "hold_expired_before_settlement")
        settle_budget(batch, held.key_id, held.budget_period, held.amount_micros, self.charge_micros)
        return Settled(self.charge_micros, held.transfer_id)

    def _charge_without_hold(self, batch: Batch, held: Held, why: str) -> Settled:
        """A charge whose hold is gone: one posted transfer, still refused below the wallet's floor."""
        if self.charge_micros == 0:
            return Settled(0, held.transfer_id, (why,))
        try:
            posted = create_posted(
                batch,
                debit_account_id=held.wallet_account_id,
                credit_account_id=held.revenue_account_id,
                amount_micros=self.charge_micros,
                now=self.now,
                kind="charge",
                request_id=self.receipt_row["request_id"],
                memo="charge without its hold",
            )
        except InsufficientFunds:
            return Settled(0, None, (why, "unbilled_wallet_empty_without_hold"))
        settle_budget(batch, held.key_id, held.budget_period, 0, self.charge_micros)
        return Settled(self.charge_micros, posted.id, (why,))
