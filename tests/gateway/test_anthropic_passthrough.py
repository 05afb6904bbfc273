"""``/v1/messages`` to an Anthropic route: the caller's body goes as it is, Anthropic's answer comes back as it is.

The official ``anthropic`` SDK, given only the gateway's base URL, talks to the fake Anthropic
upstream through glasskey. The fake issues thinking signatures it checks when they come back (as
the real API does), keeps the bytes of every stream it sends, and records every body and header it
receives, so each test compares what the caller sent or got with what the upstream got or sent.
The money path is the lifecycle's: receipts, charges (cache reads and writes included), fallback
to a translated route and back. After every test the ledger is audited.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import pytest
from anthropic import Anthropic

from conftest_helpers import make_settings
from fake_anthropic import FakeAnthropic, signature_of
from fake_openai import FakeOpenAI
from fake_upstreams import (
    anthropic_message,
    audit_clean,
    fake_upstreams,
    funded_org,
    new_test_key,
    upstream_route,
    user,
)
from gateway_fixtures import ServerThread, free_port, settled_receipt
from glasskey.app import build_app
from glasskey.errors import ClientError
from glasskey.gateway.anthropic_passthrough import EventTally, beta_header, bounding_body
from glasskey.pricing.catalog import get_model
from glasskey.pricing.metering import charge_for
from glasskey.pricing.tokens import IMAGE_TOKENS_MAX, chat_input_tokens
from glasskey.providers.anthropic_translate import read_event
from glasskey.providers.base import Usage
from glasskey.receipts.records import get_receipt
from glasskey.routing.routes import create_route
from glasskey.services import Services, build_services

CREDENTIAL = f"sk-upstream-{uuid.uuid4().hex}"
CLAUDE, UPSTREAM_CLAUDE = "claude-sonnet-4-5", "claude-sonnet-4-5-20250929"
OPENAI_MODEL = "gpt-4o-mini"
TO_TRANSLATION = "claude-haiku-4-5"  # its Anthropic route is down; its backup is an OpenAI route
TO_PASSTHROUGH = "claude-opus-4-1"  # its OpenAI route is down; its backup is an Anthropic route
THINKING: Any = {"type": "enabled", "budget_tokens": 1024}
VERSION_HEADERS = {"anthropic-version": "2023-06-01", "content-type": "application/json"}


@dataclass
class Stack:
    services: Services
    url: str
    key: str
    anthropic: FakeAnthropic
    openai: FakeOpenAI

    def sdk(self, **options: Any) -> Anthropic:
        return Anthropic(base_url=self.url, api_key=self.key, max_retries=0, **options)

    def receipt(self, request_id: str) -> dict[str, Any]:
        with self.services.db.read() as conn:
            found: dict[str, Any] = get_receipt(conn, request_id)
        return found

    def post(self, body: dict[str, Any], **headers: str) -> httpx.Response:
        return httpx.post(
            f"{self.url}/v1/messages", json=body, headers={**VERSION_HEADERS, "x-api-key": self.key, **headers}
        )


@pytest.fixture(scope="module")
def module_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    services = build_services(make_settings(tmp_path_factory.mktemp("anthropic-passthrough")))
    with fake_upstreams(openai_credential=CREDENTIAL, anthropic_credential=CREDENTIAL) as fakes:
        down = {"anthropic": f"http://127.0.0.1:{free_port()}", "openai": f"http://127.0.0.1:{free_port()}/v1"}
        routes = [
            (CLAUDE, "anthropic", fakes.urls["anthropic"], UPSTREAM_CLAUDE, 100),
            (OPENAI_MODEL, "openai", fakes.urls["openai"], OPENAI_MODEL, 100),
            (TO_TRANSLATION, "anthropic", down["anthropic"], TO_TRANSLATION, 10),
            (TO_TRANSLATION, "openai", fakes.urls["openai"], OPENAI_MODEL, 20),
            (TO_PASSTHROUGH, "openai", down["openai"], OPENAI_MODEL, 10),
            (TO_PASSTHROUGH, "anthropic", fakes.urls["anthropic"], UPSTREAM_CLAUDE, 20),
        ]
        with services.db.write() as conn:
            org_id = funded_org(conn, "passthrough", services)
            for model, provider, base_url, upstream_model, priority in routes:
                route = upstream_route(
                    conn,
                    model,
                    provider,
                    base_url,
                    credential=CREDENTIAL,
                    route_id=f"rt-{model}-{provider}",
                    upstream_model=upstream_model,
                    priority=priority,
                    forced_circuit="closed",  # the down routes fail on purpose; breakers are tested elsewhere
                )
                create_route(conn, route, services.clock())
        key = new_test_key(services, org_id, "passthrough", settlement="routed", backup_routes=True)
        with ServerThread(build_app(services)) as gateway:
            yield Stack(services, gateway.base_url, key, fakes.anthropic, fakes.openai)
    services.close()


@pytest.fixture
def stack(module_stack: Stack) -> Iterator[Stack]:
    module_stack.anthropic.reset()
    module_stack.openai.requests.clear()
    yield module_stack
    audit_clean(module_stack.services)


def billed(model: str, usage: dict[str, Any], services: Services) -> int:
    """What the receipt must charge for Anthropic's usage: cache reads at the cached price, writes as input."""
    cache_read, cache_write = usage.get("cache_read_input_tokens") or 0, usage.get("cache_creation_input_tokens") or 0
    with services.db.read() as conn:
        prices = get_model(conn, model).official_prices
    return charge_for(
        Usage(usage["input_tokens"] + cache_read + cache_write, usage["output_tokens"], cache_read), prices
    )


# -- the body goes as it is -------------------------------------------------------------------


def test_the_callers_body_reaches_anthropic_unchanged_but_for_the_model(stack: Stack):
    cached: Any = {"type": "ephemeral"}
    body: dict[str, Any] = {
        "model": CLAUDE,
        "max_tokens": 2000,
        "system": [{"type": "text", "text": "You are terse.", "cache_control": cached}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Hi #fake:cache", "cache_control": cached}]}
        ],
        "thinking": THINKING,
        "top_k": 40,  # no OpenAI-shaped route could carry it; Anthropic can
        "metadata": {"user_id": "user-7"},
        "stop_sequences": ["a", "b", "c", "d", "e"],  # more than OpenAI's four
    }
    response = stack.post(body, **{"anthropic-beta": "interleaved-thinking-2025-05-14, context-1m-2025-08-07"})
    assert response.status_code == 200, response.text
    (received,) = stack.anthropic.received
    assert received.body == {**body, "model": UPSTREAM_CLAUDE}
    assert received.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14, context-1m-2025-08-07"
    assert received.headers["anthropic-version"] == "2023-06-01"
    assert received.headers["x-api-key"] == CREDENTIAL


def test_the_answer_comes_back_as_anthropic_sent_it_and_is_billed_with_its_cache_tokens(stack: Stack):
    raw = stack.sdk().messages.with_raw_response.create(
        model=CLAUDE, max_tokens=2000, thinking=THINKING, messages=user("Hello #fake:cache")
    )
    message = raw.parse()
    (answer,) = stack.anthropic.answers
    assert [block.model_dump(exclude_none=True) for block in message.content] == answer.blocks
    assert message.model == UPSTREAM_CLAUDE and message.id.startswith("msg_fake")
    usage = message.usage.model_dump()
    assert usage["cache_read_input_tokens"] == answer.usage["cache_read_input_tokens"] > 0
    assert usage["cache_creation_input_tokens"] == answer.usage["cache_creation_input_tokens"] > 0
    assert usage["cache_creation"] == {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}  # recorded field
    receipt = stack.receipt(raw.headers["x-request-id"])
    assert receipt["status"] == "succeeded" and receipt["endpoint"] == "anthropic.messages"
    assert (receipt["provider"], receipt["upstream_model"]) == ("anthropic", UPSTREAM_CLAUDE)
    assert (
        receipt["input_tokens"]
        == usage["input_tokens"] + usage["cache_read_input_tokens"] + usage["cache_creation_input_tokens"]
    )
    assert receipt["cached_tokens"] == usage["cache_read_input_tokens"]
    assert receipt["output_tokens"] == usage["output_tokens"]
    assert "anthropic_passthrough" in receipt["flags"]
    charge = billed(CLAUDE, usage, stack.services)
    assert receipt["charge_micros"] == int(raw.headers["x-glasskey-charge-micros"]) == charge > 0
    assert receipt["charge_micros"] <= receipt["hold_micros"]


def test_a_thinking_signature_round_trips_byte_for_byte_over_two_turns(stack: Stack):
    sdk = stack.sdk()
    turn = user("What is 2+2? #fake:redacted")
    first = sdk.messages.create(model=CLAUDE, max_tokens=2000, thinking=THINKING, messages=turn)
    thinking, redacted = first.content[0], first.content[1]
    assert thinking.type == "thinking" and thinking.signature == signature_of(thinking.thinking)
    assert redacted.type == "redacted_thinking"
    history: Any = [*turn, {"role": "assistant", "content": first.content}, *user("And 3+3?")]
    second = sdk.messages.create(model=CLAUDE, max_tokens=2000, thinking=THINKING, messages=history)
    assert second.content[0].type == "thinking"
    sent_back = stack.anthropic.received[-1].body["messages"][1]["content"]
    assert sent_back[:2] == stack.anthropic.answers[0].blocks[:2]  # the signature and redacted data, exactly
    # The fake checks signatures as Anthropic does: one changed by a byte is refused upstream.
    history[1]["content"] = [{**thinking.model_dump(), "signature": thinking.signature[:-2] + "AA"}]
    with pytest.raises(anthropic.BadRequestError) as caught:
        sdk.messages.create(model=CLAUDE, max_tokens=2000, thinking=THINKING, messages=history)
    assert "Invalid `signature`" in caught.value.body["error"]["message"]  # type: ignore[index]
    assert caught.value.body["error"]["source"] == "upstream"  # type: ignore[index]


def test_server_tool_blocks_and_citations_come_back_whole(stack: Stack):
    tool: Any = {"type": "web_search_20250305", "name": "web_search", "max_uses": 1}
    message = stack.sdk().messages.create(
        model=CLAUDE, max_tokens=500, tools=[tool], messages=user("Weather in Paris? #fake:web_search")
    )
    assert stack.anthropic.received[-1].body["tools"] == [tool]
    assert [block.type for block in message.content] == ["server_tool_use", "web_search_tool_result", "text"]
    assert [block.model_dump(exclude_none=True) for block in message.content] == [
        {key: value for key, value in block.items() if value is not None}
        for block in stack.anthropic.answers[-1].blocks
    ]
    assert message.usage.server_tool_use is not None and message.usage.server_tool_use.web_search_requests == 1


# -- the stream's events go as they came ------------------------------------------------------


def test_the_stream_reaches_the_client_byte_for_byte(stack: Stack):
    body = {
        "model": CLAUDE,
        "max_tokens": 2000,
        "stream": True,
        "thinking": THINKING,
        "messages": user("Hi #fake:cache"),
    }
    with httpx.stream(
        "POST", f"{stack.url}/v1/messages", json=body, headers={**VERSION_HEADERS, "x-api-key": stack.key}
    ) as response:
        assert response.status_code == 200
        relayed = response.read()
        request_id = response.headers["x-request-id"]
    (sent,) = stack.anthropic.sent_streams
    assert relayed == sent
    assert b"signature_delta" in relayed and relayed.endswith(
        b'event: message_stop\ndata: {"type": "message_stop"}\n\n'
    )
    receipt = stack.receipt(request_id)  # written before message_stop left
    assert receipt["status"] == "succeeded" and receipt["stream"] is True
    assert receipt["cached_tokens"] == stack.anthropic.answers[0].usage["cache_read_input_tokens"] > 0
    assert receipt["charge_micros"] == billed(CLAUDE, stack.anthropic.answers[0].usage, stack.services)


def test_the_sdk_stream_accumulates_the_same_thinking_and_signature(stack: Stack):
    with stack.sdk().messages.stream(model=CLAUDE, max_tokens=2000, thinking=THINKING, messages=user("Hi")) as stream:
        final = stream.get_final_message()
    assert [block.model_dump(exclude_none=True) for block in final.content] == stack.anthropic.answers[0].blocks
    assert final.content[0].type == "thinking" and final.content[0].signature == signature_of(final.content[0].thinking)


@pytest.mark.parametrize(
    ("directive", "error_type"), [("cut=3", "api_error"), ("stream_error=overloaded_error", "overloaded_error")]
)
def test_a_stream_cut_mid_answer_ends_with_an_error_event_and_a_receipt(stack: Stack, directive: str, error_type: str):
    texts: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        stack.sdk().messages.stream(
            model=CLAUDE, max_tokens=200, messages=user(f"Tell a story #fake:{directive}")
        ) as stream,
    ):
        for text in stream.text_stream:
            texts.append(text)
    assert texts  # the answer had begun before the cut
    error = caught.value.body["error"]  # type: ignore[index]
    assert (error["type"], error["source"]) == (error_type, "upstream")
    receipt = settled_receipt(stack.services, error["request_id"])
    assert (receipt["status"], receipt["error_source"], receipt["stream"]) == ("failed", "upstream", True)
    assert receipt["provider"] == "anthropic" and "anthropic_passthrough" in receipt["flags"]
    assert receipt["charge_micros"] > 0  # what was generated before the cut is billed, at the reported usage


# -- fallback, and what only a translated route refuses ---------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_a_backup_route_of_another_provider_is_served_the_translation(stack: Stack, stream: bool):
    message, request_id = anthropic_message(
        stack.sdk(), stream=stream, model=TO_TRANSLATION, max_tokens=100, messages=user("hi")
    )
    assert message.id == f"msg_{request_id}" and message.content[0].type == "text"
    assert stack.openai.requests[-1].body["model"] == OPENAI_MODEL and stack.anthropic.received == []
    receipt = stack.receipt(request_id)
    assert [(a["provider"], a["status"]) for a in receipt["attempts"]] == [
        ("anthropic", "failed"),
        ("openai", "succeeded"),
    ]
    assert "anthropic_passthrough" not in receipt["flags"] and receipt["charge_micros"] > 0


@pytest.mark.parametrize("stream", [False, True])
def test_a_backup_anthropic_route_is_passed_the_callers_body(stack: Stack, stream: bool):
    body = {"model": TO_PASSTHROUGH, "max_tokens": 100, "messages": user("hi"), "stream": stream}
    response = stack.post(body)
    assert response.status_code == 200
    assert stack.anthropic.received[-1].body == {**body, "model": UPSTREAM_CLAUDE}
    receipt = stack.receipt(response.headers["x-request-id"])
    attempts = [(a["provider"], a["status"]) for a in receipt["attempts"]]
    assert attempts == [("openai", "failed"), ("anthropic", "succeeded")]
    assert "anthropic_passthrough" in receipt["flags"] and receipt["charge_micros"] > 0
    if stream:
        assert response.content == stack.anthropic.sent_streams[-1]


def test_a_route_that_cannot_carry_the_request_is_skipped_for_one_that_can(stack: Stack):
    body = {"model": TO_PASSTHROUGH, "max_tokens": 100, "top_k": 5, "messages": user("hi")}
    response = stack.post(body)
    assert response.status_code == 200
    assert stack.anthropic.received[-1].body == {**body, "model": UPSTREAM_CLAUDE}
    receipt = stack.receipt(response.headers["x-request-id"])
    attempts = [(a["provider"], a["status"], a["error_class"]) for a in receipt["attempts"]]
    assert attempts == [("openai", "skipped", "untranslatable"), ("anthropic", "succeeded", None)]


def test_what_only_anthropic_can_serve_is_a_400_naming_the_route_of_another_provider(stack: Stack):
    response = stack.post({"model": OPENAI_MODEL, "max_tokens": 10, "top_k": 5, "messages": user("x")})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["source"] == "client" and error["details"]["param"] == "top_k"
    assert "provider openai" in error["message"]
    assert stack.openai.requests == []
    assert stack.receipt(error["request_id"])["status"] == "failed"


def test_anthropic_beta_never_reaches_another_provider(stack: Stack):
    response = stack.post(
        {"model": OPENAI_MODEL, "max_tokens": 10, "messages": user("x")}, **{"anthropic-beta": "files-api-2025-04-14"}
    )
    assert response.status_code == 200
    assert "anthropic-beta" not in stack.openai.requests[-1].headers


# -- the edge checks still apply --------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "param"),
    [
        (
            [{"type": "thinking", "thinking": "a\x00b", "signature": "x"}, {"type": "text", "text": "ok"}],
            "messages.0.content.0.thinking",
        ),
        (
            [{"type": "text", "text": "ok", "cache_control": {"type": "ephemeral", "base_url": "http://evil"}}],
            "messages.0.content.0.cache_control.base_url",
        ),
    ],
)
def test_nul_and_upstream_choosing_fields_are_refused_before_anthropic(stack: Stack, content: Any, param: str):
    history = [*user("hi"), {"role": "assistant", "content": content}, *user("go on")]
    response = stack.post({"model": CLAUDE, "max_tokens": 10, "messages": history})
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["source"], error["details"]["param"]) == ("client", param.replace("messages.0", "messages.1"))
    assert stack.anthropic.received == []
    assert stack.receipt(error["request_id"])["error_source"] == "client"


def test_a_malformed_anthropic_beta_is_refused_and_never_sent(stack: Stack):
    response = stack.post({"model": CLAUDE, "max_tokens": 10, "messages": user("x")}, **{"anthropic-beta": "a;b=c"})
    assert response.status_code == 400
    assert response.json()["error"]["details"]["param"] == "anthropic-beta"
    assert stack.anthropic.received == []


# -- the plain parts, without a server ----------------------------------------------------------


def test_the_bound_counts_every_byte_of_thinking_and_signatures_and_images_as_images():
    signature = "s" * 4000
    history: Any = [
        *user("hi"),
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": signature}]},
        {
            "role": "user",
            "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "A" * 90_000}}
            ],
        },
    ]
    body = {
        "model": CLAUDE,
        "max_tokens": 100,
        "messages": history,
        "tools": [{"type": "web_search_20250305", "name": "web_search"}],
    }
    bound = chat_input_tokens(bounding_body(body)).upper_bound
    assert bound >= len(json.dumps(history[1]["content"][0])) + IMAGE_TOKENS_MAX
    assert bound < 90_000  # the image counts as an image, not as its base64 bytes
    assert bounding_body({**body, "stream": True})["stream_options"] == {"include_usage": True}


def test_the_event_tally_relays_bytes_as_they_came_and_holds_message_stop():
    tally = EventTally()
    usage = '{"input_tokens":10,"cache_read_input_tokens":4,"cache_creation_input_tokens":2,"output_tokens":1}'
    start = '{"type":"message_start","message":{"usage":' + usage + "}}"
    events = [
        ("message_start", start),
        (
            "content_block_delta",
            '{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hm"}}',
        ),
        (
            "content_block_delta",
            '{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"c2ln"}}',
        ),
        ("message_delta", '{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":7}}'),
        ("message_stop", '{"type":"message_stop"}'),
    ]
    written = [tally.take(read_event(name, data)) for name, data in events]
    assert written[:4] == [f"event: {name}\ndata: {data}\n\n".encode() for name, data in events[:4]]
    assert written[4] == b"" and tally.ending() == b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    assert tally.finished and tally.text() == "hm"
    assert tally.usage == Usage(input_tokens=16, output_tokens=7, cached_tokens=4)


@pytest.mark.parametrize(
    ("values", "sent"),
    [([], None), (["a-1"], "a-1"), (["a-1, b.2", "c_3"], "a-1, b.2,c_3")],
)
def test_anthropic_beta_values_are_sent_as_they_came(values: list[str], sent: str | None):
    assert beta_header(values) == sent


@pytest.mark.parametrize("value", ["a;b", "a\tb", "x" * 1001, ""])
def test_an_anthropic_beta_that_is_not_a_list_of_names_is_refused(value: str):
    with pytest.raises(ClientError) as caught:
        beta_header([value])
    assert caught.value.param == "anthropic-beta"
