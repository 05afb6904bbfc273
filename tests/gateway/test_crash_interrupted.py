"""A gateway killed mid-request: the next process voids the dead one's holds at start-up, with receipts.

Requests wait on a slow route (their holds taken, nothing answered), the process is killed with
SIGKILL, and a new process is started on the same database: before it answers its first health
check, every hold of the dead instance is voided (not after the 15-minute hold TTL), each request
has a receipt with ``status: interrupted`` and charge 0, the budgets are released, and the ledger
audits clean — on SQLite and PostgreSQL (there, told by the dead process's free liveness lock).

A stream killed after its client had received output for over a second (so its relay had recorded
its progress, ``gateway.progress``) is posted instead: charged for the recorded, estimated usage,
never above its hold, with an ``interrupted`` receipt that carries that usage.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time

import httpx
from sqlalchemy import select

from conftest_helpers import make_settings
from gateway_fixtures import free_port, seed
from glasskey.gateway.usage import estimate_tokens
from glasskey.keys.budget import TOTAL, get_spend
from glasskey.ledger import audit
from glasskey.services import build_services
from glasskey.store.tables import api_keys, instances, receipts, stream_progress, transfers
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


def _stream_into(port: str, key: str, received: list[str]) -> threading.Thread:
    """A streamed chat request from a thread of its own, already started: each text delta the
    client receives is appended to ``received``; a gateway killed under it ends it quietly."""

    def call() -> None:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 400}
        with (
            contextlib.suppress(httpx.TransportError),
            httpx.stream(
                "POST",
                f"http://127.0.0.1:{port}/v1/chat/completions",
                headers={"authorization": f"Bearer {key}"},
                json={**body, "stream": True},
                timeout=60,
            ) as response,
        ):
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    for choice in json.loads(line[6:]).get("choices") or ():
                        received.append((choice.get("delta") or {}).get("content") or "")

    caller = threading.Thread(target=call)
    caller.start()
    return caller


def test_a_stream_killed_after_its_client_saw_output_for_a_second_is_charged_for_what_was_recorded(
    tmp_path, database_url
):
    # A chunk every 50 ms: the relay records its progress once a second (gateway.progress).
    settings = make_settings(tmp_path, database_url=database_url)
    services = build_services(settings)
    seeded = seed(services, route_options={"chunk_delay_ms": 50, "output_tokens": "max"})
    services.close()
    env = server_env(settings, free_port())
    server = start_server(env)
    received: list[str] = []
    caller = _stream_into(env["GLASSKEY_PORT"], seeded["routed_key"], received)
    try:
        assert len(rows_when(services.db, select(stream_progress), 1, 30)) == 1
        server.send_signal(signal.SIGKILL)  # mid-stream: no settlement, no receipt
        server.wait(timeout=10)
    finally:
        server.kill()
        caller.join(timeout=30)
    with services.db.read() as conn:
        progress = conn.execute(select(stream_progress)).one()  # the last record before the kill
        assert conn.scalar(select(receipts.c.request_id)) is None

    restarted = start_server(env)  # voids, here posts, the dead instance's hold at start-up
    try:
        with services.db.read() as conn:
            receipt = conn.execute(select(receipts)).one()
            transfer = conn.execute(select(transfers).where(transfers.c.id == receipt.transfer_id)).one()
            spend = get_spend(conn, receipt.key_id, TOTAL)
            left = conn.scalar(select(stream_progress.c.transfer_id))
            audit(conn).raise_if_broken()
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(timeout=15)
        services.db.dispose()
    assert (receipt.status, receipt.error_code, receipt.usage_source) == ("interrupted", "interrupted", "estimated")
    assert receipt.output_tokens == progress.output_tokens > 0 and receipt.input_tokens == progress.input_tokens
    # The client had received at least what was recorded (the relay records what it already sent).
    assert estimate_tokens("".join(received)) >= receipt.output_tokens
    assert 0 < receipt.charge_micros == progress.charge_micros <= receipt.hold_micros
    assert (transfer.status, transfer.posted_amount_micros) == ("posted", receipt.charge_micros)
    assert (spend.spent_micros, spend.held_micros) == (receipt.charge_micros, 0)
    assert receipt.flags == ["interrupted_output_recorded"] and left is None
