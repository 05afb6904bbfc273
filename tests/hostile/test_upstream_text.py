"""An upstream's words never break a receipt: NUL and giant text in its errors are stored safely.

A provider's error message, type and mid-stream error event end up on the receipt (and in its
attempts). PostgreSQL refuses NUL in text and in JSON, so a host that sends one must not cost
the request its receipt, nor its batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest

from gateway_fixtures import Gateway
from hostile.conftest import add_compatible_route, receipt_of
from scripted_upstream import Answer, Seen, body_of, scripted_upstream

NUL_ERROR = b'{"error": {"message": "bad\\u0000thing' + b"x" * 100_000 + b'", "type": "t\\u0000", "code": null}}'
CHUNK = (
    b'data: {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m\\u0000",'
    b' "choices": [{"index": 0, "delta": {"content": "hi\\u0000"}, "finish_reason": null}]}\n\n'
)
COMPLETION = (
    b'{"id": "c\\u0000", "object": "chat.completion", "created": 1, "model": "m\\u0000", "choices": [{"index": 0,'
    b' "message": {"role": "assistant", "content": "a\\u0000b"}, "finish_reason": "stop"}],'
    b' "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}'
)


def answer(seen: Seen) -> Answer:
    case = orjson.loads(seen.body)["messages"][0]["content"]
    if case == "error":
        return Answer(500, body_of(NUL_ERROR))
    if case == "stream_error":
        event = b"event: error\ndata: " + NUL_ERROR + b"\n\n"
        return Answer(200, body_of(CHUNK, event), {"content-type": "text/event-stream"})
    return Answer(200, body_of(COMPLETION))


@pytest.fixture(scope="module")
def routed(hostile_gateway: Gateway) -> Iterator[tuple[Gateway, str]]:
    with scripted_upstream(answer) as (url, _):
        yield hostile_gateway, add_compatible_route(hostile_gateway, f"{url}/v1")


def chat(content: str, **fields: object) -> dict[str, object]:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": content}], "max_tokens": 20, **fields}


def test_an_upstream_error_with_nul_and_100k_characters_is_answered_and_receipted(
    routed: tuple[Gateway, str],
) -> None:
    gateway, key = routed
    response = httpx.post(
        f"{gateway.v1}/chat/completions", json=chat("error"), headers={"authorization": f"Bearer {key}"}, timeout=30
    )
    assert response.status_code == 502, response.text[:300]
    error = response.json()["error"]
    assert error["source"] == "upstream" and len(error["message"]) < 1000
    receipt = receipt_of(gateway, response.headers["x-request-id"])
    assert receipt is not None and receipt.status == "failed" and receipt.error_source == "upstream"
    assert "\x00" not in receipt.error_message and "\\u0000" in receipt.error_message
    gateway.audit_ok()


def test_a_mid_stream_error_event_with_nul_ends_the_stream_in_band_and_is_receipted(
    routed: tuple[Gateway, str],
) -> None:
    gateway, key = routed
    with httpx.stream(
        "POST",
        f"{gateway.v1}/chat/completions",
        json=chat("stream_error", stream=True),
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    ) as response:
        request_id = response.headers["x-request-id"]
        events = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert orjson.loads(events[-1])["error"]["source"] == "upstream"
    receipt = receipt_of(gateway, request_id)
    assert receipt is not None and receipt.status == "failed" and receipt.error_source == "upstream"
    assert receipt.charge_micros <= receipt.hold_micros
    gateway.audit_ok()


def test_an_answer_with_nul_in_its_text_reaches_the_client_unchanged(routed: tuple[Gateway, str]) -> None:
    gateway, key = routed
    response = httpx.post(
        f"{gateway.v1}/chat/completions", json=chat("answer"), headers={"authorization": f"Bearer {key}"}, timeout=30
    )
    assert response.status_code == 200, response.text[:300]
    assert response.json()["choices"][0]["message"]["content"] == "a\x00b"
    assert receipt_of(gateway, response.headers["x-request-id"]).status == "succeeded"
