"""A generated matrix of bad input over every ``/v1`` endpoint, on SQLite and PostgreSQL.

Each endpoint's fields get representative bad values of every class: wrong types, numbers out of
bounds (from the bounds table itself), NUL, invalid UTF-8, deep nesting, huge sizes and duplicate
keys; each body also gets the body-level classes (not JSON, not an object, 10,000 levels deep,
over the size limit). Every answer must be a JSON 4xx carrying ``source`` (``client`` for a bad
body sent with a valid key), never a 500; the error never echoes a huge value whole; every
refused chat or embeddings request leaves its receipt; and afterwards the gateway still serves
a normal request and a stream, with the ledger audit clean.

The cases are sent concurrently on kept-alive connections, so the whole matrix takes seconds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from gateway_fixtures import Gateway
from glasskey.errors import MESSAGE_MAX_CHARS
from glasskey.store.tables import receipts
from hostile.conftest import Call, call, send_all
from hostile.matrix import BODY_ENDPOINTS, CHAT, HUGE, RECEIPTED, SOURCES, body_matrix, raw_cases


@pytest.fixture(scope="module")
def answered(hostile_gateway: Gateway) -> Iterator[tuple[Gateway, list[Call], list[httpx.Response]]]:
    """The whole body matrix, sent once per engine with the routed key."""
    calls = body_matrix(hostile_gateway.routed_key)
    yield hostile_gateway, calls, send_all(hostile_gateway, calls)


def assert_json_error(response: httpx.Response, label: str, *, source: str | None = None) -> dict[str, Any]:
    assert 400 <= response.status_code < 500, (label, response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json"), label
    error: dict[str, Any] = response.json()["error"]
    assert error["source"] in SOURCES, (label, error)
    if source is not None:
        assert error["source"] == source, (label, error)
    assert error["request_id"] and error["message"], label
    assert len(error["message"]) <= MESSAGE_MAX_CHARS and HUGE[:1000] not in response.text, label
    return error


def test_every_bad_body_on_every_endpoint_is_a_json_4xx_from_the_client(
    answered: tuple[Gateway, list[Call], list[httpx.Response]],
) -> None:
    _, calls, responses = answered
    assert len(calls) > 300  # the matrix was generated, not hand-picked
    for item, response in zip(calls, responses, strict=True):
        error = assert_json_error(response, item.label, source="client")
        if item.label.endswith("too_large"):
            assert response.status_code == 413 and error["code"] == "body_too_large"


def test_every_refused_chat_and_embeddings_request_leaves_a_receipt_of_its_key_blaming_the_client(
    answered: tuple[Gateway, list[Call], list[httpx.Response]],
) -> None:
    gateway, calls, responses = answered
    expected = {
        response.headers["x-request-id"]: item.label
        for item, response in zip(calls, responses, strict=True)
        if item.label.split(":")[0] in RECEIPTED
    }
    with gateway.services.db.read() as conn:
        rows = conn.execute(
            select(receipts.c.request_id, receipts.c.status, receipts.c.error_source, receipts.c.key_id).where(
                receipts.c.request_id.in_(list(expected))
            )
        ).all()
    found = {row.request_id: row for row in rows}
    missing = sorted(label for request_id, label in expected.items() if request_id not in found)
    assert not missing, f"no receipt for {missing[:10]}"
    assert {(row.status, row.error_source) for row in rows} == {("failed", "client")}
    # The key was checked first, so each refusal is on the key's own receipts.
    assert len({row.key_id for row in rows}) == 1 and rows[0].key_id is not None


def test_after_the_matrix_the_gateway_still_serves_and_the_ledger_is_coherent(
    answered: tuple[Gateway, list[Call], list[httpx.Response]],
) -> None:
    gateway, _, _ = answered
    headers = {"authorization": f"Bearer {gateway.routed_key}"}
    response = httpx.post(f"{gateway.v1}/chat/completions", json=CHAT, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    with httpx.stream(
        "POST", f"{gateway.v1}/chat/completions", json={**CHAT, "stream": True}, headers=headers, timeout=30
    ) as stream:
        assert stream.status_code == 200
        assert "data: [DONE]" in list(stream.iter_lines())
    gateway.audit_ok()


def metadata_calls(key: str) -> list[Call]:
    """Bad query strings and paths on the endpoints without a body."""
    queries = [
        "limit=abc",
        "limit=-1",
        "limit=1e3",
        "limit=99999999999999999999999",
        "limit=%00",
        "status=%00",
        "model=z%00",
        "model=" + "m" * 8000,
        "cursor=garbage",
        "cursor=%00",
        "cursor=" + "A" * 5000,
        "limit=1&limit=abc",
    ]
    calls = [call("GET", f"receipts?{query}", key=key, label=f"receipts?{query[:40]}") for query in queries]
    for request_id in ("x" * 5000, "%ff%fe", "..%2F..%2Fadmin"):
        calls.append(call("GET", f"receipts/{request_id}", key=key, label=f"receipts/{request_id[:40]}"))
    for path in ("models?x=%00", "key?x=%00", "models", "key"):
        calls.append(call("GET", path, key=key, label=path))
    return calls


def test_bad_query_strings_and_paths_are_answered_in_json_never_a_500(hostile_gateway: Gateway) -> None:
    calls = metadata_calls(hostile_gateway.routed_key)
    responses = send_all(hostile_gateway, calls)
    failed = [(item.label, r.status_code) for item, r in zip(calls, responses, strict=True) if r.status_code >= 500]
    assert not failed
    for item, response in zip(calls, responses, strict=True):
        assert response.headers["content-type"].startswith("application/json"), item.label
        if response.status_code >= 400:
            assert_json_error(response, item.label)
        assert HUGE[:1000] not in response.text, item.label


def unauthenticated_calls() -> list[Call]:
    calls = []
    for authorization in (None, "Bearer gk-nope", "Bearer " + "gk-" + "a" * 5000, "Basic abc"):
        headers = {"content-type": "application/json"}
        if authorization is not None:
            headers["authorization"] = authorization
        for endpoint, (path, valid) in BODY_ENDPOINTS.items():
            calls.append(Call("POST", path, json.dumps(valid).encode(), headers, f"{endpoint}:{authorization!s:.20}"))
        for path in ("models", "key", "receipts", "receipts/req_x"):
            calls.append(Call("GET", path, None, headers, f"{path}:{authorization!s:.20}"))
    return calls


def test_a_request_without_a_valid_key_is_a_401_from_the_key(hostile_gateway: Gateway) -> None:
    calls = unauthenticated_calls()
    for item, response in zip(calls, send_all(hostile_gateway, calls), strict=True):
        assert response.status_code == 401, (item.label, response.status_code, response.text[:300])
        assert_json_error(response, item.label, source="key")


def test_a_bad_body_without_a_key_is_a_401_whatever_the_body(hostile_gateway: Gateway) -> None:
    # The key is checked before the body is read (issue 14), so no body can turn a 401 into a 400.
    calls = [
        Call("POST", path, raw, {"content-type": "application/json"}, f"{endpoint}:{name}")
        for endpoint, (path, valid) in BODY_ENDPOINTS.items()
        for name, raw in raw_cases(valid).items()
        if name != "too_large"
    ]
    for item, response in zip(calls, send_all(hostile_gateway, calls), strict=True):
        assert response.status_code == 401, (item.label, response.text[:300])
        assert_json_error(response, item.label, source="key")


def test_a_nul_in_a_receipt_path_is_answered_in_json(hostile_gateway: Gateway) -> None:
    headers = {"authorization": f"Bearer {hostile_gateway.routed_key}"}
    response = httpx.get(f"{hostile_gateway.v1}/receipts/req_%00", headers=headers, timeout=30)
    assert response.status_code == 404
    assert_json_error(response, "receipts/req_%00")
