"""The 64-bit counters of the ledger and of key budgets: the SQL that keeps every movement inside them.

Every counter (an account's four, a key's spent and held) is a signed 64-bit integer. The edges
bound each amount (``glasskey.limits``), but the statements that move a counter refuse an overflow
themselves, so no caller, present or future, can push one past ``COUNTER_MAX``. Each condition is
written as a subtraction from ``COUNTER_MAX``: on SQLite ``counter + :amount`` past 2^63 - 1 turns
into a float (silently, and the audit then fails); ``counter <= COUNTER_MAX - :amount`` stays in
range for every amount from 0 to ``COUNTER_MAX``.

A conditional statement answered at once (a debit) refuses by changing no row. An increment
deferred to the end of a writer's batch has nobody to answer to, so it fails loudly instead: the
new value is NULL when it would overflow, and the NOT NULL column refuses it. The batch then rolls
back and the writer retries its writes one by one, so only the guilty write fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from glasskey.errors import ClientError
from glasskey.limits import COUNTER_MAX
from glasskey.store.batch import Batch


def room_for(counter: str, amount: str) -> str:
    """The condition that ``counter + amount`` (``amount`` from 0 to ``COUNTER_MAX``) fits."""
    return f"{counter} <= {COUNTER_MAX} - {amount}"


def room_for_change(counter: str, change: str) -> str:
    """The condition that ``counter + change`` fits, for a change of either sign (a negative one always does)."""
    return room_for(counter, f"(CASE WHEN {change} > 0 THEN {change} ELSE 0 END)")


def bounded_sum(counter: str, change: str) -> str:
    """``counter + change``, or NULL (refused by the NOT NULL column) where it would overflow."""
    return f"CASE WHEN {room_for_change(counter, change)} THEN {counter} + {change} END"


def too_large(what: str) -> ClientError:
    """The refusal of a movement that would take ``what`` past ``COUNTER_MAX``."""
    return ClientError(
        f"this movement would take {what} past the largest amount the ledger can count ({COUNTER_MAX:,} micros)",
        code="value_too_large",
    )


@contextmanager
def refused_as_too_large(batch: Batch, what: str) -> Iterator[None]:
    """Run a bounded increment of a caller outside the writer (it runs at once) under a savepoint:
    the NOT NULL refusal of an overflow becomes ``too_large(what)``, and the caller's transaction
    stays usable (PostgreSQL would otherwise abort it)."""
    if batch.writes is not None:  # in the writer: deferred, an overflow fails the batch (see above)
        yield
        return
    integrity_error = batch.conn.dialect.dbapi.IntegrityError  # type: ignore[union-attr]
    try:
        with batch.conn.begin_nested():
            yield
    except integrity_error:
        raise too_large(what) from None
