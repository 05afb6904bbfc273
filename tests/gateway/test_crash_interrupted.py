"""A gateway killed mid-request: the next process voids the dead one's holds at start-up, with receipts.

Requests wait on a slow route (their holds taken, nothing answered), the process is killed with
SIGKILL, and a new process is started on the same database: before it answers its first health
check, every hold of the dead instance is voided (not after the 15-minute hold TTL), each request
has a receipt with ``status: interrupted`` and charge 0, the budgets are released, and the ledger
audits clean — on SQLite and PostgreSQL (there, told by the dead process's free liveness lock).
"""

from __future__ import annotations

import signal
import time

from sqlalchemy import select

from conftest_helpers import make_settings
from gateway_fixtures import free_port, seed
from glasskey.keys.budget import TOTAL, get_spend
from glasskey.ledger import audit
from glasskey.services import build_services
from glasskey.store.tables import api_keys, instances, receipts, transfers
from server_process import held_calls, rows_when, server_env, start_server

IN_FLIGHT = 4


def test_holds_of_a_killed_gateway_are_voided_at_the_next_start_with_interrupted_receipts(tmp_path, database_url):
    settings = make_settings(tmp_path, database_url=database_url)
    services = build_services(settings)
    seeded = seed(services, route_options={"latency_ms": 120_000})  # every call waits, holding
    services.close()
    env = server_env(settings, free_port())
    server = start_server(env)

    callers = held_calls(env["GLASSKEY_PORT"], seeded["routed_key"], IN_FLIGHT)
    pending = select(transfers.c.id, transfers.c.instance_id).where(transfers.c.status == "pending")
    try:
        held = rows_when(services.db, pending, IN_FLIGHT, 30)
        assert len(held) == IN_FLIGHT
        server.send_signal(signal.SIGKILL)  # no shutdown: the holds stay, no receipt is written
        server.wait(timeout=10)
    finally:
        server.kill()
        for caller in callers:
            caller.join(timeout=30)
    dead_instance = held[0].instance_id
    assert dead_instance is not None and {row.instance_id for row in held} == {dead_instance}
    with services.db.read() as conn:
        assert conn.scalar(select(receipts.c.request_id)) is None  # nothing settled
        # On PostgreSQL the dead instance's heartbeat is still fresh: its free liveness lock is
        # what tells the new process (gateway.liveness), not three missed beats.

    started = time.monotonic()
    restarted = start_server(env)  # answers /healthz only after its start-up, which voids the holds
    try:
        with services.db.read() as conn:
            statuses = {row.id: row.status for row in conn.execute(select(transfers.c.id, transfers.c.status))}
            interrupted = list(conn.execute(select(receipts).where(receipts.c.status == "interrupted")))
            key_id = conn.scalar(select(api_keys.c.id).where(api_keys.c.name == "routed"))
            assert key_id is not None
            spend = get_spend(conn, key_id, TOTAL)
            instance_ids = set(conn.scalars(select(instances.c.id)))
            audit(conn).raise_if_broken()
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(timeout=15)
        services.db.dispose()
    assert time.monotonic() - started < 60  # at start-up, not after the 15-minute hold TTL
    assert all(statuses[row.id] == "voided" for row in held)
    assert len(interrupted) == IN_FLIGHT
    for receipt in interrupted:
        assert receipt.transfer_id in statuses and receipt.charge_micros == 0
        assert receipt.error_source == "gateway" and receipt.error_code == "interrupted"
        assert receipt.usage_source == "estimated" and receipt.hold_micros > 0
        assert receipt.key_id == key_id and receipt.org_id == seeded["org_id"]
        assert receipt.requested_model == "gpt-4o-mini" and receipt.settlement == "routed"
    assert spend.held_micros == 0 and spend.spent_micros == 0  # the budget hold went with the wallet's
    assert dead_instance not in instance_ids
