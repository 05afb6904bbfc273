"""Kill the gateway in the middle of load: every request that got a success has its receipt and charge,
and the next process voids the dead one's holds at once.

The writer answers a request only after the commit that carried its hold, charge and receipt,
so a SIGKILL can lose work in flight but never work already acknowledged. The holds of the
requests that were in flight are voided by the restarted gateway before it answers anything, each
with an ``interrupted`` receipt — no expiry sweep is run, so a hold the restart missed stays
pending and fails the test. Then the restarted gateway serves again and the ledger audits clean
(on SQLite and PostgreSQL).
"""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
from sqlalchemy import select

from conftest_helpers import make_settings
from gateway_fixtures import ServerThread, free_port, seed
from glasskey.app import build_app
from glasskey.ledger import audit
from glasskey.services import build_services
from glasskey.store.tables import instances, receipts, transfers
from server_process import server_env, start_server

ACKNOWLEDGED_BEFORE_KILL = 150
WORKERS = 16
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


def test_sigkill_during_load_loses_no_acknowledged_request_and_the_restart_voids_its_holds(tmp_path, database_url):
    # On PostgreSQL the writer pipelines a batch's holds and settlements (see store.batch.Batch.send).
    settings = make_settings(tmp_path, database_url=database_url)
    services = build_services(settings)
    # Every call waits 100 ms upstream, holding: at the kill about WORKERS holds are in flight.
    seeded = seed(services, route_options={"latency_ms": 100})
    services.close()
    env = server_env(settings, free_port())
    server = start_server(env)
    acknowledged: list[str] = []

    async def worker(client: httpx.AsyncClient, stop_at: float) -> None:
        while time.monotonic() < stop_at:
            try:
                response = await client.post("/chat/completions", json=CHAT)
            except httpx.TransportError:
                return
            if response.status_code == 200:
                acknowledged.append(response.headers["x-request-id"])

    async def load_then_kill() -> None:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{env['GLASSKEY_PORT']}/v1",
            headers={"authorization": f"Bearer {seeded['routed_key']}"},
            timeout=10,
        ) as client:
            stop_at = time.monotonic() + 30
            workers = [asyncio.create_task(worker(client, stop_at)) for _ in range(WORKERS)]
            while len(acknowledged) < ACKNOWLEDGED_BEFORE_KILL and time.monotonic() < stop_at:
                await asyncio.sleep(0.01)
            server.send_signal(signal.SIGKILL)  # no shutdown, no flush: the process just dies
            await asyncio.gather(*workers)

    try:
        asyncio.run(load_then_kill())
    finally:
        server.kill()
        server.wait(timeout=10)

    assert len(acknowledged) >= ACKNOWLEDGED_BEFORE_KILL
    with services.db.read() as conn:
        held = list(
            conn.execute(select(transfers.c.id, transfers.c.instance_id).where(transfers.c.status == "pending"))
        )
    assert held, "the kill left no hold in flight: the test proves nothing about the restart"
    dead_instance = held[0].instance_id
    assert dead_instance is not None and {row.instance_id for row in held} == {dead_instance}

    # The restart, in this process (a second `glasskey serve` would only add seconds of imports):
    # a new instance on the same database, whose start-up voids the dead one's holds.
    restarted = build_services(settings)
    try:
        with ServerThread(build_app(restarted)) as again:
            # Read before anything else: no expiry sweep has run (the holds' TTL is 15 minutes away).
            with services.db.read() as conn:
                status_of = {row.id: row.status for row in conn.execute(select(transfers.c.id, transfers.c.status))}
                receipt_of = {
                    row.transfer_id: row
                    for row in conn.execute(
                        select(
                            receipts.c.transfer_id, receipts.c.status, receipts.c.charge_micros, receipts.c.error_code
                        )
                    )
                }
                rows = {
                    r.request_id: r
                    for r in conn.execute(
                        select(
                            receipts.c.request_id, receipts.c.status, receipts.c.charge_micros, receipts.c.transfer_id
                        )
                    )
                }
                posted = {
                    t.id: t.posted_amount_micros
                    for t in conn.execute(select(transfers).where(transfers.c.status == "posted"))
                }
                instance_ids = set(conn.scalars(select(instances.c.id)))
            # The restarted gateway serves again, on the same database, and the ledger still audits clean.
            served = httpx.post(
                f"{again.base_url}/v1/chat/completions",
                headers={"authorization": f"Bearer {seeded['routed_key']}"},
                json=CHAT,
                timeout=30,
            )
        with services.db.read() as conn:
            report = audit(conn)
    finally:
        restarted.close()
        services.db.dispose()

    for request_id in acknowledged:
        receipt = rows[request_id]
        assert receipt.status == "succeeded"
        assert receipt.charge_micros > 0
        assert posted[receipt.transfer_id] == receipt.charge_micros
    assert "pending" not in status_of.values()  # nothing left for a sweep to find
    for hold in held:
        assert status_of[hold.id] == "voided"
        interrupted = receipt_of[hold.id]
        assert interrupted.status == "interrupted" and interrupted.charge_micros == 0
        assert interrupted.error_code == "interrupted"
    assert dead_instance not in instance_ids
    assert served.status_code == 200, served.text
    report.raise_if_broken()
    assert report.receipt_charges_micros == report.posted_charges_micros
