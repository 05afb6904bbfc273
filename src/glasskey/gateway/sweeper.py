"""The expiry sweep: holds whose request never settled (the process died) are released.

Each expired charge hold also releases the budget it held on its key, in the same
transaction, so neither the wallet nor the key's budget keeps money that nothing will spend.
The progress records of streams no longer holding (``gateway.progress``) are removed with them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from glasskey.gateway.progress import forget_settled
from glasskey.keys.budget import settle_budget
from glasskey.ledger import expire_pending


def sweep_expired_holds(conn: Connection, now: datetime, *, limit: int = 1000) -> int:
    expired = expire_pending(conn, now, limit=limit)
    for transfer in expired:
        if transfer.key_id and transfer.budget_period:
            settle_budget(conn, transfer.key_id, transfer.budget_period, transfer.amount_micros, 0)
    forget_settled(conn)
    return len(expired)
