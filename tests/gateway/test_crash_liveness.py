"""PostgreSQL: a gateway killed mid-request has its holds voided by a running one within seconds.

A ``glasskey serve`` process and a gateway in the test's process share one database. Requests
wait on a slow route through the first (their holds taken), it is killed with SIGKILL, and the
second, which keeps running, voids every hold of the dead one with an ``interrupted`` receipt as
soon as the dead one's liveness lock stays free for a second (``gateway.liveness``), not after
three missed heartbeats (30 s).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from conftest_helpers import make_settings, postgres_schema_url
from gateway_fixtures import ServerThread, free_port, seed
from glasskey.app import build_app
from glasskey.gateway.instances import DEAD_AFTER_BEATS, HEARTBEAT_SECONDS
from glasskey.ledger import audit
from glasskey.services import build_services
from glasskey.store.tables import instances, receipts, transfers
from server_process import held_calls, rows_when, server_env, start_server

IN_FLIGHT = 3


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from postgres_schema_url()


def test_a_running_gateway_voids_the_holds_of_a_killed_one_within_seconds(tmp_path, postgres_url):
    settings = make_settings(tmp_path, database_url=postgres_url)
    services = build_services(settings)
    seeded = seed(services, route_options={"latency_ms": 120_000})  # every call waits, holding
    victim_env = server_env(settings, free_port())
    # The survivor runs in this process (a subprocess's start costs seconds on a busy machine).
    with ServerThread(build_app(services)) as survivor:
        victim = start_server(victim_env)

        callers = held_calls(victim_env["GLASSKEY_PORT"], seeded["routed_key"], IN_FLIGHT)
        pending = select(transfers.c.id, transfers.c.instance_id).where(transfers.c.status == "pending")
        try:
            held = rows_when(services.db, pending, IN_FLIGHT, 30)
            assert len(held) == IN_FLIGHT
            victim.send_signal(signal.SIGKILL)  # no shutdown: the holds stay, no receipt is written
            victim.wait(timeout=10)
            killed = time.monotonic()
            held_ids = [row.id for row in held]
            voided = select(transfers.c.id).where(transfers.c.id.in_(held_ids), transfers.c.status == "voided")
            done = rows_when(services.db, voided, IN_FLIGHT, 20)
            took_seconds = time.monotonic() - killed
            with services.db.read() as conn:
                interrupted = list(conn.execute(select(receipts).where(receipts.c.status == "interrupted")))
                instance_ids = set(conn.scalars(select(instances.c.id)))
                report = audit(conn)
            assert httpx.get(f"{survivor.base_url}/healthz").status_code == 200
        finally:
            victim.kill()
            for caller in callers:
                caller.join(timeout=30)
    services.close()
    assert len(done) == IN_FLIGHT
    # Heartbeats alone would take 30 s; the lock tells at the second check after the kill.
    assert took_seconds < HEARTBEAT_SECONDS * DEAD_AFTER_BEATS / 3, took_seconds
    assert {receipt.transfer_id for receipt in interrupted} == set(held_ids)
    assert all(receipt.charge_micros == 0 and receipt.error_code == "interrupted" for receipt in interrupted)
    assert held[0].instance_id not in instance_ids  # the dead instance is gone, the survivor is not
    assert report.ok, report
