"""A broken upstream's usage (2^64, 1e40, negative, strings, booleans, nested junk) never kills a relay.

Issue 18 #3: ``{"prompt_tokens": 1e40}`` in a stream's usage chunk used to end the relay with
``Integer exceeds 64-bit range``: no ``[DONE]``, a receipt blaming the route, the whole hold
charged. Now every count is clamped or treated as missing, the client's stream ends properly,
and the charge stays within the hold.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from gateway_fixtures import Gateway
from hostile.conftest import add_compatible_route, receipt_of
from scripted_upstream import Answer, Seen, body_of, scripted_upstream

DEEP = "[" * 300 + "1" + "]" * 300
# Raw JSON, as a broken host writes it: some of these cannot even be built as Python values.
USAGES = {
    "float_1e40": '{"prompt_tokens": 1e40, "completion_tokens": 5, "total_tokens": 1e40}',
    "u64_max": '{"prompt_tokens": 18446744073709551615, "completion_tokens": 18446744073709551615}',
    "beyond_u64": '{"prompt_tokens": 100000000000000000000000, "completion_tokens": 3}',
    "negative": '{"prompt_tokens": -5, "completion_tokens": -1e40}',
    "string": '{"prompt_tokens": "12", "completion_tokens": 3}',
    "boolean": '{"prompt_tokens": true, "completion_tokens": 3}',
    "nested": '{"prompt_tokens": {"n": 1}, "completion_tokens": [3]}',
    "junk_beside": '{"prompt_tokens": 5, "completion_tokens": 3,'
    ' "completion_tokens_details": {"reasoning_tokens": 1e40},'
    f' "deep": {DEEP}, "prompt_tokens_details": {{"cached_tokens": 18446744073709551615}}}}',
}


def chunk(choices: str, usage: str | None = None) -> bytes:
    extra = f', "usage": {usage}' if usage is not None else ""
    return (
        f'data: {{"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",'
        f' "choices": {choices}{extra}}}\n\n'
    ).encode()


def stream_of(usage: str) -> bytes:
    return b"".join(
        [
            chunk('[{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]'),
            chunk('[{"index": 0, "delta": {"content": "Hello there, friend"}, "finish_reason": null}]'),
            chunk('[{"index": 0, "delta": {}, "finish_reason": "stop"}]'),
            chunk("[]", usage),
            b"data: [DONE]\n\n",
        ]
    )


def cut_stream_of(usage: str) -> bytes:
    """Content, the host's running usage, then the connection closes: no finish reason, no [DONE]."""
    return b"".join(
        [
            chunk('[{"index": 0, "delta": {"role": "assistant", "content": "Hello"}, "finish_reason": null}]'),
            chunk('[{"index": 0, "delta": {"content": " there"}, "finish_reason": null}]', usage),
        ]
    )


def completion_of(usage: str) -> bytes:
    return (
        '{"id": "c1", "object": "chat.completion", "created": 1, "model": "m", "choices": [{"index": 0,'
        ' "message": {"role": "assistant", "content": "Hello there"}, "finish_reason": "stop"}],'
        f' "usage": {usage}}}'
    ).encode()


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[str, dict[str, str]]]:
    """A host answering with the usage in ``script["usage"]``, as a stream or a JSON body."""
    script: dict[str, str] = {"usage": USAGES["float_1e40"], "cut": ""}

    def answer(seen: Seen) -> Answer:
        if orjson.loads(seen.body).get("stream"):
            stream = (cut_stream_of if script.get("cut") else stream_of)(script["usage"])
            return Answer(200, body_of(stream), {"content-type": "text/event-stream"})
        return Answer(200, body_of(completion_of(script["usage"])))

    with scripted_upstream(answer) as (url, _):
        yield url, script


@pytest.fixture(scope="module")
def routed(hostile_gateway: Gateway, upstream: tuple[str, dict[str, str]]) -> tuple[Gateway, str, dict[str, str]]:
    url, script = upstream
    return hostile_gateway, add_compatible_route(hostile_gateway, f"{url}/v1"), script


def _assert_settled_within_hold(gateway: Gateway, request_id: str) -> Any:
    receipt = receipt_of(gateway, request_id)
    assert receipt is not None
    assert receipt.status == "succeeded", (receipt.error_source, receipt.error_code, receipt.error_message)
    assert receipt.error_source is None
    assert receipt.hold_micros > 0 and receipt.charge_micros <= receipt.hold_micros
    assert receipt.usage_source in ("provider_reported", "estimated")
    assert 0 <= receipt.input_tokens < 2**63 and 0 <= receipt.output_tokens < 2**63
    return receipt


@pytest.mark.parametrize("include_usage", [True, False], ids=["usage_relayed", "usage_kept"])
@pytest.mark.parametrize("case", sorted(USAGES))
def test_a_stream_with_giant_or_junk_usage_ends_with_done_and_a_charge_within_the_hold(
    routed: tuple[Gateway, str, dict[str, str]], case: str, include_usage: bool
) -> None:
    gateway, key, script = routed
    script["usage"] = USAGES[case]
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 50,
        "stream": True,
        "stream_options": {"include_usage": include_usage},
    }
    with httpx.stream(
        "POST", f"{gateway.v1}/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=30
    ) as response:
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        events = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    payloads = [orjson.loads(event) for event in events[:-1]]
    assert not any("error" in payload for payload in payloads)
    assert "".join(c["delta"].get("content") or "" for p in payloads for c in p["choices"]) == "Hello there, friend"
    reported = [p["usage"] for p in payloads if p.get("usage")]
    if include_usage and reported:
        for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
            assert isinstance(reported[-1][name], int) and abs(reported[-1][name]) < 2**63
    receipt = _assert_settled_within_hold(gateway, request_id)
    if case in ("string", "boolean", "nested"):
        assert receipt.usage_source == "estimated"


@pytest.mark.parametrize("case", ["float_1e40", "u64_max", "beyond_u64", "junk_beside", "string"])
def test_a_json_answer_with_giant_or_junk_usage_is_answered_and_charged_within_the_hold(
    routed: tuple[Gateway, str, dict[str, str]], case: str
) -> None:
    gateway, key, script = routed
    script["usage"] = USAGES[case]
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50}
    response = httpx.post(
        f"{gateway.v1}/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    usage = response.json().get("usage")
    if usage is not None:
        assert all(isinstance(usage[name], int) for name in ("prompt_tokens", "completion_tokens"))
    _assert_settled_within_hold(gateway, response.headers["x-request-id"])
    gateway.audit_ok()


@pytest.mark.parametrize("case", ["float_1e40", "beyond_u64", "string", "junk_beside"])
def test_a_stream_cut_after_giant_usage_ends_with_an_in_band_error_blaming_the_upstream(
    routed: tuple[Gateway, str, dict[str, str]], case: str
) -> None:
    gateway, key, script = routed
    script.update(usage=USAGES[case], cut="yes")
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50, "stream": True}
    try:
        with httpx.stream(
            "POST", f"{gateway.v1}/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=30
        ) as response:
            request_id = response.headers["x-request-id"]
            events = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    finally:
        script["cut"] = ""
    error = orjson.loads(events[-1])["error"]
    assert error["source"] == "upstream", error
    receipt = receipt_of(gateway, request_id)
    assert receipt.status == "failed" and receipt.error_source == "upstream", receipt.error_message
    assert receipt.charge_micros <= receipt.hold_micros
    gateway.audit_ok()
