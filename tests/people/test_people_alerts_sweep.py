"""The gateway's own background sweep sends alerts: nothing but a running app and a crossed threshold
(that each crossing is sent once is held by test_people_alerts_firing)."""

from __future__ import annotations

import json
import time

from starlette.testclient import TestClient

from alert_receiver import receiver
from conftest_helpers import NOW
from glasskey.alerts.signing import verify
from glasskey.alerts.webhooks import set_webhook
from glasskey.app import build_app
from glasskey.orgs.service import create_org


def test_a_running_gateway_evaluates_in_its_background_sweep_and_delivers_signed_events(services):
    with receiver() as hook:
        with services.db.write() as conn:
            org = create_org(conn, "acme", NOW)  # its wallets are empty: past the default threshold
            _webhook, secret = set_webhook(conn, services.vault, org.id, hook.url, NOW, allow_private=True)
        with TestClient(build_app(services)) as client:
            assert client.get("/healthz").status_code == 200
            deadline = time.monotonic() + 10  # a bound on waiting, not a claim about speed
            while len(hook.received) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
    assert secret is not None
    events = [json.loads(got.body) for got in hook.received]
    assert sorted(event["alert"]["wallet"] for event in events) == ["credit", "routed"]
    assert {event["type"] for event in events} == {"alert.fired"}
    for got in hook.received:
        timestamp = got.headers["glasskey-timestamp"]
        assert verify(secret, timestamp, got.headers["glasskey-signature"], got.body, now_seconds=int(timestamp))
