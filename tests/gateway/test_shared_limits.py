"""Two gateway processes behind one Redis enforce one requests-per-minute limit per key."""

from __future__ import annotations

import httpx

from conftest_helpers import make_settings, require_redis
from gateway_fixtures import ServerThread, seed
from glasskey.app import build_app
from glasskey.keys.policy import KeyPolicy
from glasskey.keys.service import create_key
from glasskey.services import build_services


def test_the_rate_limit_holds_across_two_gateways(tmp_path):
    url = require_redis()
    settings = make_settings(tmp_path, redis_url=url)
    one, two = build_services(settings), build_services(settings)
    seeded = seed(one)
    with one.db.write() as conn:
        _, key = create_key(
            conn,
            pepper=one.pepper,
            org_id=seeded["org_id"],
            name="limited",
            policy=KeyPolicy(settlement="routed", rpm_limit=3),
            now=one.clock(),
        )
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    headers = {"authorization": f"Bearer {key}"}
    try:
        with ServerThread(build_app(one)) as a, ServerThread(build_app(two)) as b:
            statuses = [
                httpx.post(f"{server.base_url}/v1/chat/completions", json=body, headers=headers).status_code
                for server in (a, b, a, b)
            ]
    finally:
        one.close()
        two.close()
    assert statuses == [200, 200, 200, 429]
