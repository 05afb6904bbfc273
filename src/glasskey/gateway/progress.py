"""What a stream in flight has forwarded, recorded about once a second, for the receipt of a crash.

A process killed mid-stream writes no settlement: the next process voids its hold at once
(``gateway.instances``). Without a record, what the client had already received is lost with the
process, and the ``interrupted`` receipt could only say "0 tokens, unknown". So the relay records
its progress while it relays: the usage of the output forwarded so far (counted as a cut stream's
settlement counts it: reported usage if the upstream sent it, else estimated from the text), the
serving route, and the charge that usage makes at the route's prices, capped by the hold.

Cheap on purpose: at most one write per ``PROGRESS_SECONDS`` per stream, and none at all for a
stream that ends sooner (most do); each is a non-durable upsert through the group-commit writer,
so it shares the next commit with other requests' writes and the relay waits for no commit. The
cost: up to the last ``PROGRESS_SECONDS`` of output (plus a write not yet committed when the
process died) goes unrecorded, and is not charged.

Rows are keyed by the hold's transfer id. The next process reads the row of each hold it voids
(``recorded``); rows of streams that settled normally are removed by the expiry sweep
(``forget_settled``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, exists, select

from glasskey.pricing.catalog import Prices
from glasskey.pricing.metering import charge_for
from glasskey.providers.base import Usage
from glasskey.store.batch import Batch
from glasskey.store.commands import Write
from glasskey.store.driver import DriverStatement
from glasskey.store.tables import UTCDateTime, stream_progress, transfers

PROGRESS_SECONDS = 1.0

_UPSERT = DriverStatement(
    "INSERT INTO stream_progress (transfer_id, route_id, provider, upstream_model, input_tokens,"
    " output_tokens, cached_tokens, usage_source, input_price_per_mtok_micros,"
    " output_price_per_mtok_micros, cached_price_per_mtok_micros, charge_micros, recorded_at)"
    " VALUES (:transfer_id, :route_id, :provider, :upstream_model, :input_tokens, :output_tokens,"
    " :cached_tokens, :usage_source, :input_price_per_mtok_micros, :output_price_per_mtok_micros,"
    " :cached_price_per_mtok_micros, :charge_micros, :recorded_at)"
    " ON CONFLICT (transfer_id) DO UPDATE SET input_tokens = excluded.input_tokens,"
    " output_tokens = excluded.output_tokens, cached_tokens = excluded.cached_tokens,"
    " usage_source = excluded.usage_source, charge_micros = excluded.charge_micros,"
    " recorded_at = excluded.recorded_at",
    {"recorded_at": UTCDateTime()},
)


@dataclass(frozen=True)
class Progress:
    """One stream's forwarded output so far, and what it would be charged."""

    transfer_id: str
    route_id: str
    provider: str
    upstream_model: str
    usage: Usage
    usage_source: str
    prices: Prices
    charge_micros: int
    recorded_at: datetime

    def row(self) -> dict[str, Any]:
        return {
            "transfer_id": self.transfer_id,
            "route_id": self.route_id,
            "provider": self.provider,
            "upstream_model": self.upstream_model,
            "input_tokens": self.usage.input_tokens,
            "output_tokens": self.usage.output_tokens,
            "cached_tokens": self.usage.cached_tokens,
            "usage_source": self.usage_source,
            "input_price_per_mtok_micros": self.prices.input_per_mtok_micros,
            "output_price_per_mtok_micros": self.prices.output_per_mtok_micros,
            "cached_price_per_mtok_micros": self.prices.cached_per_mtok_micros,
            "charge_micros": self.charge_micros,
            "recorded_at": self.recorded_at,
        }


class RecordProgress:
    """The writer's command: upsert one stream's progress row (answered once sent, no read)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def send(self, batch: Batch) -> None:
        batch.send(_UPSERT, self.progress.row())

    def finish(self, batch: Batch) -> None:
        return None


def charge_of(usage: Usage, prices: Prices, hold_micros: int) -> int:
    """The charge of forwarded output, by the rule of a stream's settlement: never above its hold."""
    return min(charge_for(usage, prices), hold_micros)


Submit = Callable[[Write[Any]], Awaitable[Any]]


class Recorder:
    """When a relay records its progress: first ``PROGRESS_SECONDS`` after it began (``start``),
    then no more often than every ``PROGRESS_SECONDS`` (``due``), each time through ``submit``."""

    def __init__(self, submit: Submit, monotonic: Callable[[], float], clock: Callable[[], datetime]) -> None:
        self.submit = submit
        self.monotonic = monotonic
        self.clock = clock
        self.last = 0.0
        self.writes = 0

    def start(self) -> None:
        self.last = self.monotonic()

    def due(self) -> bool:
        return self.monotonic() - self.last >= PROGRESS_SECONDS

    def skip(self) -> None:
        """Nothing to record yet: look again in ``PROGRESS_SECONDS``."""
        self.last = self.monotonic()

    async def record(self, progress: Progress) -> None:
        self.last = self.monotonic()
        self.writes += 1
        await self.submit(RecordProgress(progress))


def recorded(conn: Connection, transfer_id: str) -> Progress | None:
    """The last progress recorded for the stream holding ``transfer_id``, if any."""
    row = conn.execute(select(stream_progress).where(stream_progress.c.transfer_id == transfer_id)).first()
    if row is None:
        return None
    return Progress(
        transfer_id=row.transfer_id,
        route_id=row.route_id,
        provider=row.provider,
        upstream_model=row.upstream_model,
        usage=Usage(row.input_tokens, row.output_tokens, row.cached_tokens),
        usage_source=row.usage_source,
        prices=Prices(
            row.input_price_per_mtok_micros, row.output_price_per_mtok_micros, row.cached_price_per_mtok_micros
        ),
        charge_micros=row.charge_micros,
        recorded_at=row.recorded_at,
    )


def forget(conn: Connection, transfer_id: str) -> None:
    conn.execute(delete(stream_progress).where(stream_progress.c.transfer_id == transfer_id))


def forget_settled(conn: Connection) -> int:
    """Remove the progress of streams no longer holding (settled, voided or expired); how many."""
    holding = exists().where(transfers.c.id == stream_progress.c.transfer_id, transfers.c.status == "pending")
    return conn.execute(delete(stream_progress).where(~holding)).rowcount
