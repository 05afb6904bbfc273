"""What the alert tests share: the credential vault of webhook secrets, a clock they move by hand,
the documented payloads, and a key's total spend set directly."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection

from conftest_helpers import NOW, TEST_ENCRYPTION_KEY
from glasskey.keys.service import KeyRecord
from glasskey.routing.credentials import CredentialVault
from glasskey.store.tables import key_spend

VAULT = CredentialVault([TEST_ENCRYPTION_KEY])
ALERTS_DOC = Path(__file__).parents[1] / "docs" / "alerts.md"


class Clock:
    """``now`` starts at ``NOW`` and moves when a test sets it."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def set_total_spend(conn: Connection, key: KeyRecord, spent_micros: int) -> None:
    """The key's total spend counter, as if its requests had spent ``spent_micros``."""
    conn.execute(key_spend.delete().where(key_spend.c.key_id == key.id))
    conn.execute(key_spend.insert().values(key_id=key.id, period="total", spent_micros=spent_micros, held_micros=0))
