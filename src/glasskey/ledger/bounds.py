"""The 64-bit counters of the ledger and of key budgets: the SQL that keeps every movement inside them.

Every counter (an account's four, a key's spent and held) is a signed 64-bit integer. The edges
bound each amount (``glasskey.limits``), but the statements that move a counter refuse an overflow
themselves, so no caller, present or future, can push one past ``COUNTER_MAX``. Each condition is
written as a subtraction from ``COUNTER_MAX``: on SQLite ``counter + :amount`` past 2^63 - 1 turns
into a float (silently, and the audit then fails); ``counter <= COUNTER_MAX - :amount`` stays in
range for every amount from 0 to ``COUNTER_MAX``.

A conditional statement answered at once (a debit) refuses by changing no row. An increment
deferred to the end of a writer's batch (``Batch.increment``) has nobody to answer to when it
runs, so it fails loudly instead: the new value is NULL when it would overflow, and the NOT NULL
column refuses it. ``Batch.increment`` turns that refusal into ``limits.counter_overflow``
(``value_too_large``) naming the counter, in the writer as outside it: in the writer the batch
rolls back and its writes are retried one by one, so only the guilty write fails, with
``value_too_large``; outside it the increment runs at once under a savepoint, so the caller's
transaction stays usable.
"""

from __future__ import annotations

from glasskey.limits import COUNTER_MAX


def room_for(counter: str, amount: str) -> str:
    """The condition that ``counter + amount`` (``amount`` from 0 to ``COUNTER_MAX``) fits."""
    return f"{counter} <= {COUNTER_MAX} - {amount}"


def room_for_change(counter: str, change: str) -> str:
    """The condition that ``counter + change`` fits, for a change of either sign (a negative one always does)."""
    return room_for(counter, f"(CASE WHEN {change} > 0 THEN {change} ELSE 0 END)")


def bounded_sum(counter: str, change: str) -> str:
    """``counter + change``, or NULL (refused by the NOT NULL column) where it would overflow."""
    return f"CASE WHEN {room_for_change(counter, change)} THEN {counter} + {change} END"
