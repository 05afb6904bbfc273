"""A client that leaves mid-stream: forwarding stops, what was generated is billed, the ledger agrees."""

from __future__ import annotations

import time

import httpx

from glasskey.receipts.records import list_receipts
from glasskey.routing.routes import update_route


def test_client_disconnect_mid_stream_settles_the_hold_and_leaves_a_receipt(gateway):
    with gateway.services.db.write() as conn:
        update_route(conn, "rt-gpt-4o-mini-routed", options={"chunk_delay_ms": 50})
    with (
        httpx.Client(timeout=30) as client,
        client.stream(
            "POST",
            f"{gateway.v1}/chat/completions",
            headers={"authorization": f"Bearer {gateway.routed_key}"},
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "a long story"}], "stream": True},
        ) as response,
    ):
        assert response.status_code == 200
        lines = response.iter_lines()
        received = [next(lines) for _ in range(3)]
        assert received[0].startswith("data: ")
    # The connection is closed here; the gateway notices and settles on its own.
    deadline = time.monotonic() + 15
    receipt = None
    while time.monotonic() < deadline:
        with gateway.services.db.read() as conn:
            page = list_receipts(conn, key_id=None, org_id=gateway.org_id)
        if page.data:
            receipt = page.data[0]
            break
        time.sleep(0.05)
    assert receipt is not None, "no receipt after the client disconnected"
    assert "client_disconnected" in receipt["flags"]
    assert receipt["status"] == "failed"
    assert receipt["http_status"] == 499
    assert receipt["usage_source"] == "estimated"
    assert 0 < receipt["charge_micros"] < receipt["hold_micros"]
    gateway.audit_ok()
