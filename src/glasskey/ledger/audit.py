"""The ledger audit: every invariant of the brief, checked from the rows themselves.

1. Debits equal credits, posted and pending, across all accounts.
2. Each account's four counters equal the sums of the transfers that touch it.
3. No account with a floor has ``available`` below it.
4. No posted transfer posted more than it held; resolved transfers carry the right amounts.
5. Every receipt charge is matched by exactly one posted charge transfer for the same amount,
   every posted charge transfer belongs to exactly one receipt, and the two sums are equal.

``audit`` returns a report; ``AuditReport.raise_if_broken`` turns a broken one into an
``InvariantViolation`` (tests and the stress suites call it at the end).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import Connection, select

from glasskey.errors import InvariantViolation
from glasskey.store.tables import accounts, receipts, transfers


@dataclass
class AuditReport:
    problems: list[str] = field(default_factory=list)
    accounts_checked: int = 0
    transfers_checked: int = 0
    receipts_checked: int = 0
    receipt_charges_micros: int = 0
    posted_charges_micros: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_if_broken(self) -> None:
        if self.problems:
            raise InvariantViolation("ledger audit failed:\n" + "\n".join(self.problems[:50]))


def audit(conn: Connection) -> AuditReport:
    report = AuditReport()
    sums: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    posted_charges: dict[str, int] = {}
    for t in conn.execute(select(transfers)):
        report.transfers_checked += 1
        if t.amount_micros < 0:
            report.problems.append(f"transfer {t.id} has a negative amount")
        if t.status == "pending":
            sums[t.debit_account_id]["debits_pending"] += t.amount_micros
            sums[t.credit_account_id]["credits_pending"] += t.amount_micros
        elif t.status == "posted":
            posted = t.posted_amount_micros
            if posted is None or posted < 0 or posted > t.amount_micros:
                report.problems.append(f"transfer {t.id} posted {posted} against a hold of {t.amount_micros}")
                continue
            sums[t.debit_account_id]["debits_posted"] += posted
            sums[t.credit_account_id]["credits_posted"] += posted
            if t.kind == "charge":
                posted_charges[t.id] = posted
        elif t.status in ("voided", "expired"):
            if t.posted_amount_micros:
                report.problems.append(f"{t.status} transfer {t.id} carries a posted amount")
        else:
            report.problems.append(f"transfer {t.id} has unknown status {t.status!r}")

    totals: dict[str, int] = defaultdict(int)
    for a in conn.execute(select(accounts)):
        report.accounts_checked += 1
        for counter in ("debits_posted", "credits_posted", "debits_pending", "credits_pending"):
            stored = getattr(a, counter)
            totals[counter] += stored
            if stored != sums[a.id][counter]:
                report.problems.append(
                    f"account {a.id} {counter}={stored} but its transfers sum to {sums[a.id][counter]}"
                )
        if a.floor_micros is not None:
            available = a.credits_posted - a.debits_posted - a.debits_pending
            if available < a.floor_micros:
                report.problems.append(f"account {a.id} available {available} is below its floor {a.floor_micros}")
    if totals["debits_posted"] != totals["credits_posted"]:
        report.problems.append(f"posted debits {totals['debits_posted']} != credits {totals['credits_posted']}")
    if totals["debits_pending"] != totals["credits_pending"]:
        report.problems.append(f"pending debits {totals['debits_pending']} != credits {totals['credits_pending']}")

    claimed: dict[str, str] = {}
    for r in conn.execute(select(receipts.c.request_id, receipts.c.charge_micros, receipts.c.transfer_id)):
        report.receipts_checked += 1
        report.receipt_charges_micros += r.charge_micros
        if r.charge_micros == 0:
            continue
        if r.transfer_id is None or r.transfer_id not in posted_charges:
            report.problems.append(f"receipt {r.request_id} charged {r.charge_micros} with no posted transfer")
            continue
        if r.transfer_id in claimed:
            report.problems.append(
                f"transfer {r.transfer_id} is claimed by {claimed[r.transfer_id]} and {r.request_id}"
            )
        claimed[r.transfer_id] = r.request_id
        if posted_charges[r.transfer_id] != r.charge_micros:
            report.problems.append(
                f"receipt {r.request_id} charged {r.charge_micros} but transfer {r.transfer_id} "
                f"posted {posted_charges[r.transfer_id]}"
            )
    report.posted_charges_micros = sum(posted_charges.values())
    for transfer_id, amount in posted_charges.items():
        if amount and transfer_id not in claimed:
            report.problems.append(f"posted charge {transfer_id} of {amount} has no receipt")
    if report.receipt_charges_micros != report.posted_charges_micros:
        report.problems.append(
            f"receipts sum to {report.receipt_charges_micros} but posted charges to {report.posted_charges_micros}"
        )
    return report
