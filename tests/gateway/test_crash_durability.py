"""Kill the gateway in the middle of load: every request that got a success has its receipt and charge.

The writer answers a request only after the commit that carried its hold, charge and receipt,
so a SIGKILL can lose work in flight but never work already acknowledged. Holds of requests
that were in flight are released by the expiry sweep; after it the restarted gateway serves again
and the ledger audits clean (on SQLite and PostgreSQL).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import httpx
from sqlalchemy import select

from conftest_helpers import make_settings
from gateway_fixtures import ServerThread, free_port, seed
from glasskey.app import build_app
from glasskey.gateway.sweeper import sweep_expired_holds
from glasskey.ledger import audit
from glasskey.services import build_services
from glasskey.store.tables import receipts, transfers


def test_sigkill_during_load_loses_no_acknowledged_request(tmp_path, database_url):
    # On PostgreSQL the writer pipelines a batch's holds and settlements (see store.batch.Batch.send).
    settings = make_settings(tmp_path, database_url=database_url)
    services = build_services(settings)
    seeded = seed(services)
    services.close()
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GLASSKEY_")},
        "GLASSKEY_DATA_DIR": str(tmp_path),
        "GLASSKEY_ADMIN_TOKEN": settings.admin_token.get_secret_value(),
        "GLASSKEY_KEY_PEPPER": settings.key_pepper.get_secret_value(),
        "GLASSKEY_ENCRYPTION_KEY": settings.encryption_key.get_secret_value(),
        "GLASSKEY_ALLOW_PRIVATE_UPSTREAMS": "true",
        "GLASSKEY_PORT": str(port),
        "GLASSKEY_DATABASE_URL": database_url,
    }
    server = subprocess.Popen(
        [sys.executable, "-c", "from glasskey.cli import main; main()", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    acknowledged: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz")
                break
            except httpx.TransportError:
                time.sleep(0.05)

        async def worker(client: httpx.AsyncClient, stop_at: float) -> None:
            while time.monotonic() < stop_at:
                try:
                    response = await client.post(
                        "/chat/completions",
                        json={
                            "model": "gpt-4o-mini",
                            "messages": [{"role": "user", "content": "hi"}],
                            "max_tokens": 16,
                        },
                    )
                except httpx.TransportError:
                    return
                if response.status_code == 200:
                    acknowledged.append(response.headers["x-request-id"])

        async def load_then_kill() -> None:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}/v1",
                headers={"authorization": f"Bearer {seeded['routed_key']}"},
                timeout=10,
            ) as client:
                stop_at = time.monotonic() + 30
                workers = [asyncio.create_task(worker(client, stop_at)) for _ in range(16)]
                while len(acknowledged) < 150 and time.monotonic() < stop_at:
                    await asyncio.sleep(0.01)
                server.send_signal(signal.SIGKILL)  # no shutdown, no flush: the process just dies
                await asyncio.gather(*workers)

        asyncio.run(load_then_kill())
    finally:
        server.kill()
        server.wait(timeout=10)

    assert len(acknowledged) >= 150
    restarted = build_services(settings)
    try:
        with restarted.db.read() as conn:
            rows = {
                r.request_id: r
                for r in conn.execute(
                    select(receipts.c.request_id, receipts.c.status, receipts.c.charge_micros, receipts.c.transfer_id)
                )
            }
            posted = {
                t.id: t.posted_amount_micros
                for t in conn.execute(select(transfers).where(transfers.c.status == "posted"))
            }
        for request_id in acknowledged:
            receipt = rows[request_id]
            assert receipt.status == "succeeded"
            assert receipt.charge_micros > 0
            assert posted[receipt.transfer_id] == receipt.charge_micros
        with restarted.db.write() as conn:
            sweep_expired_holds(conn, restarted.clock() + timedelta(days=1))
        # The restarted gateway serves again, on the same database, and the ledger still audits clean.
        with ServerThread(build_app(restarted)) as again:
            served = httpx.post(
                f"{again.base_url}/v1/chat/completions",
                headers={"authorization": f"Bearer {seeded['routed_key']}"},
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16},
                timeout=30,
            )
        assert served.status_code == 200, served.text
        with restarted.db.read() as conn:
            report = audit(conn)
        report.raise_if_broken()
        assert report.receipt_charges_micros == report.posted_charges_micros
    finally:
        restarted.close()
