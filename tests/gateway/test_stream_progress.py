"""A relayed stream records what it forwarded about once a second; a crash's receipt charges for it.

The relay is driven by a fake clock (each upstream chunk moves it on), so no test sleeps: a
progress write happens once a second has gone by since the relay began, never before, never more
often, and not at all for a stream shorter than that. A dead instance's hold with a record is
posted for the recorded charge (an ``interrupted`` receipt with the usage and route), and the
sweep removes the records of streams that settled normally.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from conftest_helpers import NOW
from gateway.test_instances import held_by
from gateway_fixtures import simulated_route
from glasskey.gateway import instances
from glasskey.gateway.accounting import Held
from glasskey.gateway.progress import Progress, Recorder, RecordProgress, charge_of, forget_settled, recorded
from glasskey.gateway.relay import ChunkTally, Relay
from glasskey.gateway.run import Run
from glasskey.gateway.usage import estimate_tokens
from glasskey.keys.budget import TOTAL, get_spend
from glasskey.ledger import SYSTEM_REVENUE, audit, get_balance, get_transfer
from glasskey.pricing.catalog import Prices
from glasskey.providers.base import Usage
from glasskey.receipts.records import Receipt
from glasskey.store.batch import Batch
from glasskey.store.database import Database
from glasskey.store.tables import receipts, stream_progress

PRICES = Prices(1_000_000, 4_000_000, 500_000)
ROUTE = simulated_route("rt-progress", "gpt-4o-mini", PRICES)
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}
HOLD = Held("tr_progress", 50_000, "2026-01-01", "acc_wallet", SYSTEM_REVENUE["routed"], "key_1")


class Clock:
    def __init__(self) -> None:
        self.seconds = 100.0

    def __call__(self) -> float:
        return self.seconds


class NoFallback:
    def succeeded(self, *args: Any) -> None:
        return None

    def failed(self, *args: Any) -> None:
        return None


def chunk(text: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


def relay_writes(gaps: list[float]) -> tuple[list[tuple[float, Progress]], Relay]:
    """Relay a stream whose chunk i+1 arrives ``gaps[i]`` seconds after chunk i; the progress
    writes it made (at which relay second, with what) and the relay."""
    clock = Clock()
    began = clock.seconds
    writes: list[tuple[float, Progress]] = []

    async def submit(write: Any) -> None:
        assert isinstance(write, RecordProgress)
        writes.append((clock.seconds - began, write.progress))

    async def upstream() -> AsyncIterator[Any]:
        for gap in gaps:
            clock.seconds += gap
            yield chunk("word ")

    async def settle(*args: Any, **kwargs: Any) -> int:
        return 0

    async def emit(data: bytes) -> None:
        return None

    async def flush() -> None:
        return None

    run = Run(Receipt(request_id="req_p", endpoint="chat.completions", created_at=NOW), started=0.0, hold=HOLD)
    recorder = Recorder(submit, clock, lambda: NOW)
    relay = Relay(
        run,
        ROUTE,
        0.0,
        BODY,
        upstream(),
        chunk("first "),
        NoFallback(),  # type: ignore[arg-type]
        settle,
        ChunkTally(BODY),
        recorder,
    )
    asyncio.run(relay(emit, flush))
    return writes, relay


def test_a_stream_shorter_than_a_second_records_nothing() -> None:
    writes, _ = relay_writes([0.3, 0.3, 0.3])  # the last chunk 0.9 s after the first
    assert writes == []


def test_progress_is_written_once_a_second_has_passed_and_not_more_often() -> None:
    # Chunks every 0.3 s for 3.3 s: writes at the first chunk past 1 s, then each past the last + 1 s.
    writes, relay = relay_writes([0.3] * 11)
    assert [round(at, 1) for at, _ in writes] == [1.2, 2.4]
    first, second = writes[0][1], writes[1][1]
    # At 1.2 s the client had the first chunk and four more: six words forwarded, estimated.
    assert first.usage.output_tokens == estimate_tokens("first " + "word " * 4)
    assert second.usage.output_tokens == estimate_tokens("first " + "word " * 8)
    assert first.usage_source == "estimated" and first.usage.input_tokens > 0
    assert (first.transfer_id, first.route_id, first.prices) == (HOLD.transfer_id, ROUTE.id, PRICES)
    assert second.charge_micros == charge_of(second.usage, PRICES, HOLD.amount_micros) > 0
    assert relay.recorder is not None and relay.recorder.writes == 2


def test_the_recorded_charge_never_exceeds_the_hold() -> None:
    usage = Usage(10_000, 100_000)
    assert charge_of(usage, PRICES, 1_000) == 1_000


def record(db: Database, progress: Progress) -> None:
    with db.write() as conn:
        batch = Batch.group(conn)
        job = batch.job()
        write = RecordProgress(progress)
        write.send(job)
        batch.flush()
        write.finish(job)
        batch.keep(job)
        batch.apply()


def progress_of(held: Held, output_tokens: int) -> Progress:
    usage = Usage(20, output_tokens)
    return Progress(
        held.transfer_id,
        ROUTE.id,
        "simulated",
        "gpt-4o-mini",
        usage,
        "estimated",
        PRICES,
        charge_of(usage, PRICES, held.amount_micros),
        NOW,
    )


def test_a_dead_instances_stream_with_recorded_progress_is_charged_for_it(db: Database) -> None:
    with db.write() as conn:
        instances.register(conn, "inst_dead", NOW - timedelta(minutes=5))
    held, wallet, key_id = held_by(db, "inst_dead")
    record(db, progress_of(held, 10))
    record(db, progress_of(held, 30))  # the later record replaces the earlier
    charge = charge_of(Usage(20, 30), PRICES, held.amount_micros)
    with db.write() as conn:
        assert instances.void_dead_holds(conn, "inst_self", NOW) == 1
    with db.read() as conn:
        receipt = conn.execute(select(receipts).where(receipts.c.request_id == "req_acc")).one()
        transfer = get_transfer(conn, held.transfer_id)
        assert get_balance(conn, wallet).available_micros == 500_000 - charge
        spend = get_spend(conn, key_id, TOTAL)
        assert conn.scalar(select(stream_progress.c.transfer_id)) is None  # the record went with the hold
        audit(conn).raise_if_broken()
    assert 0 < charge <= held.amount_micros
    assert (transfer.status, transfer.posted_amount_micros) == ("posted", charge)
    assert (spend.spent_micros, spend.held_micros) == (charge, 0)
    assert (receipt.status, receipt.error_code, receipt.charge_micros) == ("interrupted", "interrupted", charge)
    assert (receipt.input_tokens, receipt.output_tokens, receipt.usage_source) == (20, 30, "estimated")
    assert (receipt.route_id, receipt.provider, receipt.output_price_per_mtok_micros) == (
        ROUTE.id,
        "simulated",
        4_000_000,
    )
    assert receipt.flags == ["interrupted_output_recorded"] and receipt.stream


def test_the_sweep_forgets_the_progress_of_streams_no_longer_holding(db: Database) -> None:
    with db.write() as conn:
        instances.register(conn, "inst_live", NOW)
    held, _, _ = held_by(db, "inst_live")
    record(db, progress_of(held, 10))
    gone = Held("tr_settled_long_ago", 1, "2026-01-01", "acc", SYSTEM_REVENUE["routed"], "key")
    record(db, progress_of(gone, 10))  # its transfer is not pending (here: not there at all)
    with db.write() as conn:
        assert forget_settled(conn) == 1
        assert recorded(conn, held.transfer_id) is not None  # still holding: kept
        assert recorded(conn, gone.transfer_id) is None
