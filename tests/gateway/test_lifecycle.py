"""The lifecycle without a server: a key, a body reader and the simulated provider, on SQLite."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from conftest_helpers import make_settings
from gateway_fixtures import seed
from glasskey.errors import APIKeyError, ClientError, GlasskeyError
from glasskey.gateway.lifecycle import Lifecycle
from glasskey.gateway.outcomes import JSONOutcome, StreamOutcome
from glasskey.keys import secret as key_secret
from glasskey.keys.service import find_by_public_id, revoke_key
from glasskey.ledger import audit
from glasskey.services import Services, build_services
from glasskey.store.tables import receipts

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 20}


@pytest.fixture
def seeded(tmp_path) -> Iterator[tuple[Services, dict[str, str]]]:
    services = build_services(make_settings(tmp_path))
    try:
        yield services, seed(services)
    finally:
        services.close()


def body_of(payload: Any) -> Callable[[], Awaitable[bytes]]:
    async def read() -> bytes:
        return payload if isinstance(payload, bytes) else orjson.dumps(payload)

    return read


def receipt_row(services: Services, request_id: str) -> Any:
    with services.db.read() as conn:
        return conn.execute(select(receipts).where(receipts.c.request_id == request_id)).one()


def audited(services: Services) -> None:
    with services.db.read() as conn:
        report = audit(conn)
    report.raise_if_broken()
    assert report.receipt_charges_micros == report.posted_charges_micros


def test_an_answer_is_held_called_settled_and_receipted_in_process(seeded):
    services, keys = seeded
    lifecycle = Lifecycle(services)
    outcome = asyncio.run(lifecycle.chat("req_one", f"Bearer {keys['routed_key']}", body_of(CHAT)))
    assert isinstance(outcome, JSONOutcome)
    row = receipt_row(services, "req_one")
    assert row.status == "succeeded" and row.endpoint == "chat.completions"
    assert 0 < row.charge_micros <= row.hold_micros
    assert outcome.headers["x-glasskey-charge-micros"] == str(row.charge_micros)
    assert outcome.headers["x-glasskey-hold-micros"] == str(row.hold_micros)
    assert [a["status"] for a in row.attempts] == ["succeeded"]
    audited(services)


def test_a_stream_is_relayed_settled_and_only_then_done(seeded):
    services, keys = seeded
    lifecycle = Lifecycle(services)
    sent: list[bytes] = []
    settled_before_done: list[bool] = []

    async def emit(data: bytes) -> None:
        if data == b"data: [DONE]\n\n":
            settled_before_done.append(receipt_row(services, "req_stream").status == "succeeded")
        sent.append(data)

    async def flush() -> None:
        sent.append(b"<flush>")

    async def run() -> None:
        body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
        outcome = await lifecycle.chat("req_stream", f"Bearer {keys['routed_key']}", body_of(body))
        assert isinstance(outcome, StreamOutcome)
        await outcome.relay(emit, flush)

    asyncio.run(run())
    assert sent[-1] == b"data: [DONE]\n\n"
    assert sent[-2] == b"<flush>", "what was relayed goes out before the settlement's commit"
    assert settled_before_done == [True], "[DONE] leaves only after the settlement's commit"
    assert receipt_row(services, "req_stream").usage_source == "provider_reported"
    audited(services)


def test_the_key_is_checked_before_the_body_so_a_keyless_request_is_401_whatever_it_sends(seeded):
    services, _ = seeded
    lifecycle = Lifecycle(services)
    with pytest.raises(APIKeyError):
        asyncio.run(lifecycle.chat("req_nokey", None, body_of(b"{not json")))
    row = receipt_row(services, "req_nokey")
    assert (row.http_status, row.error_source, row.key_id) == (401, "key", None)


def test_a_bad_body_with_a_valid_key_is_the_keys_failure_on_its_receipt(seeded):
    services, keys = seeded
    lifecycle = Lifecycle(services)
    with pytest.raises(ClientError):
        asyncio.run(lifecycle.chat("req_badbody", f"Bearer {keys['routed_key']}", body_of(b"{not json")))
    row = receipt_row(services, "req_badbody")
    public_id = key_secret.parse(keys["routed_key"])[0]  # type: ignore[index]
    with services.db.read() as conn:
        key = find_by_public_id(conn, public_id)
    assert key is not None
    assert (row.http_status, row.error_source, row.key_id, row.org_id) == (400, "client", key.id, key.org_id)


@pytest.mark.parametrize("how", ["revoked", "wrong secret"])
def test_a_refused_key_that_names_a_known_public_id_is_attributed_to_that_key(seeded, how: str):
    services, keys = seeded
    token = keys["official_key"]
    public_id = key_secret.parse(token)[0]  # type: ignore[index]
    with services.db.write() as conn:
        key = find_by_public_id(conn, public_id)
        assert key is not None
        if how == "revoked":
            revoke_key(conn, key.id, services.clock())
    if how == "wrong secret":
        token = token[:-4] + ("aaaa" if not token.endswith("aaaa") else "bbbb")
    services.cache.clear()
    with pytest.raises(APIKeyError) as refused:
        asyncio.run(Lifecycle(services).chat("req_refused", f"Bearer {token}", body_of(CHAT)))
    row = receipt_row(services, "req_refused")
    assert row.key_id == key.id and row.org_id == key.org_id, "the key's holder sees the failure"
    assert row.error_source == "key"
    assert key.id not in refused.value.message, "the caller learns nothing more than 401"


def test_a_wallet_refusal_leaves_a_receipt_and_no_hold(tmp_path):
    services = build_services(make_settings(tmp_path))
    try:
        keys = seed(services, wallet_micros=0)
        with pytest.raises(GlasskeyError) as refused:
            asyncio.run(Lifecycle(services).chat("req_broke", f"Bearer {keys['routed_key']}", body_of(CHAT)))
        assert refused.value.source == "wallet"
        row = receipt_row(services, "req_broke")
        assert (row.http_status, row.charge_micros, row.transfer_id) == (402, 0, None)
        audited(services)
    finally:
        services.close()


def test_a_stream_cut_mid_answer_ends_with_its_error_only_once_its_receipt_is_committed(tmp_path):
    services = build_services(make_settings(tmp_path))
    try:
        keys = seed(services, route_options={"cut_stream_after_chunks": 2})
        seen_at_error: list[str] = []
        sent: list[bytes] = []

        async def emit(data: bytes) -> None:
            if b'"error"' in data:
                seen_at_error.append(receipt_row(services, "req_cut").status)
            sent.append(data)

        async def flush() -> None:
            return None

        async def run() -> None:
            body = {**CHAT, "stream": True}
            outcome = await Lifecycle(services).chat("req_cut", f"Bearer {keys['routed_key']}", body_of(body))
            assert isinstance(outcome, StreamOutcome)
            await outcome.relay(emit, flush)

        asyncio.run(run())
        assert seen_at_error == ["failed"], "the error event leaves after the failed receipt is committed"
        assert b"[DONE]" not in sent[-1]
        audited(services)
    finally:
        services.close()
