"""The gateway's ``/v1/messages``, driven by the official ``anthropic`` SDK given only a base URL.

Four routes end at four upstreams, so an Anthropic-format request is served by each kind of
provider: ``gpt-4o-mini`` by the fake OpenAI (which checks each translated body against the
``openai`` SDK's request types), ``claude-sonnet-4-5`` by the fake Anthropic (checked against the
``anthropic`` SDK's request types), ``gemini-2.5-flash`` by the fake Gemini (checked against the
``google-genai`` SDK's types), ``gpt-4o`` by the built-in simulated provider.
After every test the ledger is audited: receipt charges equal posted ledger charges.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import anthropic
import httpx
import pytest
from anthropic import Anthropic
from starlette.applications import Starlette
from starlette.testclient import TestClient

from conftest_helpers import make_settings
from fake_anthropic import DEFAULT_REPLY, FakeAnthropic
from fake_gemini import THOUGHT_SUMMARY, FakeGemini
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
from glasskey.gateway.anthropic_api import routes_anthropic
from glasskey.orgs.service import create_org
from glasskey.receipts.records import get_receipt
from glasskey.request_ids import RequestIdMiddleware
from glasskey.routing.routes import create_route
from glasskey.services import Services, build_services

CREDENTIAL = f"sk-upstream-{uuid.uuid4().hex}"
OPENAI_MODEL, ANTHROPIC_MODEL, GEMINI_MODEL, SIMULATED_MODEL = (
    "gpt-4o-mini",
    "claude-sonnet-4-5",
    "gemini-2.5-flash",
    "gpt-4o",
)
MODELS = (OPENAI_MODEL, ANTHROPIC_MODEL, GEMINI_MODEL, SIMULATED_MODEL)
FALLBACK_MODEL = "gpt-4.1-mini"  # its first route is down, its backup answers
PROVIDERS = {OPENAI_MODEL: "openai", ANTHROPIC_MODEL: "anthropic", GEMINI_MODEL: "gemini", SIMULATED_MODEL: "simulated"}
WEATHER_TOOL: Any = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16).decode()


@dataclass
class Stack:
    services: Services
    url: str
    org_id: str
    key: str
    fake_openai: FakeOpenAI
    fake_anthropic: FakeAnthropic
    fake_gemini: FakeGemini

    def sdk(self, key: str | None = None, **options: Any) -> Anthropic:
        return Anthropic(
            base_url=self.url, api_key=key or self.key, max_retries=options.pop("max_retries", 0), **options
        )

    def new_key(self, org_id: str | None = None, **policy: Any) -> str:
        policy = {"settlement": "routed", "lower_cost_routes": True, **policy}
        return new_test_key(self.services, org_id or self.org_id, "anthropic sdk", **policy)

    def receipt(self, request_id: str) -> dict[str, Any]:
        with self.services.db.read() as conn:
            found: dict[str, Any] = get_receipt(conn, request_id)
        return found

    def receipts_of(self, key: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/v1/receipts", headers={"authorization": f"Bearer {key}"})
        assert response.status_code == 200
        data: list[dict[str, Any]] = response.json()["data"]
        return data


@pytest.fixture(scope="module")
def module_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    services = build_services(make_settings(tmp_path_factory.mktemp("anthropic-inbound")))
    credentials = {"openai_credential": CREDENTIAL, "anthropic_credential": CREDENTIAL, "gemini_credential": CREDENTIAL}
    with fake_upstreams(**credentials) as fakes:
        now = services.clock()
        with services.db.write() as conn:
            org_id = funded_org(conn, "anthropic-sdk-users", services)
            for model, provider in PROVIDERS.items():
                # These tests fail on purpose; breakers are tested elsewhere.
                route = upstream_route(
                    conn, model, provider, fakes.urls[provider], credential=CREDENTIAL, forced_circuit="closed"
                )
                create_route(conn, route, now)
            # A model whose first route is down (a closed port) and whose backup is simulated.
            down = f"http://127.0.0.1:{free_port()}/v1"
            for route_id, provider, base_url, priority in (
                ("rt-down", "openai", down, 10),
                ("rt-backup", "simulated", "", 20),
            ):
                backup = upstream_route(
                    conn,
                    FALLBACK_MODEL,
                    provider,
                    base_url,
                    credential=CREDENTIAL,
                    route_id=route_id,
                    priority=priority,
                    forced_circuit="closed",
                )
                create_route(conn, backup, now)
        with ServerThread(build_app(services)) as gateway:
            stack = Stack(services, gateway.base_url, org_id, "", fakes.openai, fakes.anthropic, fakes.gemini)
            stack.key = stack.new_key(allowed_models=MODELS)
            yield stack
    services.close()


@pytest.fixture
def stack(module_stack: Stack) -> Iterator[Stack]:
    module_stack.fake_openai.requests.clear()
    module_stack.fake_anthropic.reset()
    module_stack.fake_gemini.requests.clear()
    yield module_stack
    audit_clean(module_stack.services)


# -- create and stream ---------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_create_is_served_by_every_provider_charged_and_receipted(stack: Stack, model: str):
    raw = stack.sdk().messages.with_raw_response.create(
        model=model, max_tokens=200, system="Be brief.", messages=user("Say hello")
    )
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant"
    assert message.model == model
    assert message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    request_id = raw.headers["x-request-id"]
    assert raw.headers["request-id"] == request_id
    # An Anthropic route's answer comes back as Anthropic sent it, with its own message id.
    assert message.id.startswith("msg_fake") if model == ANTHROPIC_MODEL else message.id == f"msg_{request_id}"
    receipt = stack.receipt(request_id)
    assert receipt["status"] == "succeeded"
    assert receipt["endpoint"] == "anthropic.messages"
    assert receipt["provider"] == PROVIDERS[model]
    assert receipt["charge_micros"] == int(raw.headers["x-glasskey-charge-micros"]) > 0
    cache = message.usage.cache_read_input_tokens or 0
    assert receipt["input_tokens"] == message.usage.input_tokens + cache + (
        message.usage.cache_creation_input_tokens or 0
    )
    assert receipt["output_tokens"] == message.usage.output_tokens


def test_the_anthropic_route_gets_the_system_prompt_and_user_id_and_answers_its_text(stack: Stack):
    message = stack.sdk().messages.create(
        model=ANTHROPIC_MODEL,
        max_tokens=100,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=user("Say hello #fake:cache"),
        metadata={"user_id": "user-42"},
        stop_sequences=["never"],
    )
    (received,) = stack.fake_anthropic.received
    # Passed through: the cache breakpoint reaches Anthropic.
    assert received.body["system"] == [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
    assert received.body["metadata"] == {"user_id": "user-42"}
    assert received.body["stop_sequences"] == ["never"]
    assert message.content[0].type == "text" and message.content[0].text == DEFAULT_REPLY
    reported = stack.fake_anthropic.answers[0].usage
    assert message.usage.cache_read_input_tokens == reported["cache_read_input_tokens"] > 0
    assert message.usage.cache_creation_input_tokens == reported["cache_creation_input_tokens"] > 0
    assert message.usage.input_tokens == reported["input_tokens"]


@pytest.mark.parametrize("model", MODELS)
def test_a_stream_carries_the_same_answer_and_usage_and_bills_once(stack: Stack, model: str):
    sdk = stack.sdk()
    raw = sdk.messages.with_raw_response.create(model=model, max_tokens=200, messages=user("Tell a story"))
    whole, whole_id = raw.parse(), raw.headers["x-request-id"]
    with sdk.messages.stream(model=model, max_tokens=200, messages=user("Tell a story")) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
        request_id = stream.response.headers["x-request-id"]
    assert "".join(texts) == whole.content[0].text == final.content[0].text  # type: ignore[union-attr]
    assert len(texts) > 1
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.usage.input_tokens == whole.usage.input_tokens
    receipt = stack.receipt(request_id)
    assert receipt["stream"] is True and receipt["status"] == "succeeded"
    assert receipt["endpoint"] == "anthropic.messages"
    assert receipt["charge_micros"] == stack.receipt(whole_id)["charge_micros"] > 0


@pytest.mark.parametrize("stream", [False, True])
def test_a_backup_route_serves_when_the_first_is_down_as_for_chat_completions(stack: Stack, stream: bool):
    sdk = stack.sdk(stack.new_key(backup_routes=True))
    message, request_id = anthropic_message(
        sdk, stream=stream, model=FALLBACK_MODEL, max_tokens=300, messages=user("hi")
    )
    assert message.content and message.stop_reason == "end_turn"
    receipt = stack.receipt(request_id)
    assert [(a["route_id"], a["status"]) for a in receipt["attempts"]] == [
        ("rt-down", "failed"),
        ("rt-backup", "succeeded"),
    ]
    assert receipt["route_id"] == "rt-backup" and receipt["charge_micros"] > 0


def test_stream_events_come_in_the_messages_api_order(stack: Stack):
    response = httpx.post(
        f"{stack.url}/v1/messages",
        headers={"x-api-key": stack.key, "anthropic-version": "2023-06-01"},
        json={"model": OPENAI_MODEL, "max_tokens": 50, "stream": True, "messages": user("hi")},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    names = [line.removeprefix("event: ") for line in response.text.splitlines() if line.startswith("event: ")]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert set(names[3:-3]) == {"content_block_delta"}
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]


# -- tools, images, thinking ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "directive"),
    [(OPENAI_MODEL, ""), (ANTHROPIC_MODEL, ""), (GEMINI_MODEL, " [[tool:get_weather]]"), (SIMULATED_MODEL, "")],
)
def test_a_tool_round_trip(stack: Stack, model: str, directive: str):
    sdk = stack.sdk()
    question = user(f"What is the weather in Paris?{directive}")
    first = sdk.messages.create(
        model=model, max_tokens=200, messages=question, tools=[WEATHER_TOOL], tool_choice={"type": "auto"}
    )
    assert first.stop_reason == "tool_use"
    call = next(block for block in first.content if block.type == "tool_use")
    assert call.name == "get_weather" and isinstance(call.input, dict) and call.input
    history: Any = [
        *question,
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "21 degrees"}]},
    ]
    second = sdk.messages.create(model=model, max_tokens=200, messages=history, tools=[WEATHER_TOOL])
    assert second.stop_reason == "end_turn"
    answer = second.content[0].text  # type: ignore[union-attr]
    assert answer and ("21 degrees" in answer or model == SIMULATED_MODEL)  # the fakes repeat a tool's result


def test_a_streamed_tool_call_arrives_as_input_json_deltas(stack: Stack):
    with stack.sdk().messages.stream(
        model=OPENAI_MODEL, max_tokens=200, messages=user("Weather?"), tools=[WEATHER_TOOL]
    ) as stream:
        kinds = [(event.type, getattr(getattr(event, "delta", None), "type", None)) for event in stream]
        final = stream.get_final_message()
    assert ("content_block_delta", "input_json_delta") in kinds
    call = next(block for block in final.content if block.type == "tool_use")
    assert call.name == "get_weather" and call.input  # the deltas join into the tool's JSON input
    assert final.stop_reason == "tool_use"


def test_an_image_reaches_the_upstream_as_a_data_url(stack: Stack):
    image: Any = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    message = stack.sdk().messages.create(
        model=OPENAI_MODEL,
        max_tokens=100,
        messages=[{"role": "user", "content": [image, {"type": "text", "text": "What is this?"}]}],
    )
    assert message.content[0].text.startswith("I see 1 images")  # type: ignore[union-attr]
    sent = stack.fake_openai.requests[-1].body["messages"][0]["content"]
    assert sent[0] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}


def test_documents_and_image_urls_reach_an_anthropic_route_as_blocks(stack: Stack):
    pdf = base64.b64encode(b"%PDF-1.4 fake").decode()
    content: Any = [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": pdf}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
        {"type": "text", "text": "Compare them."},
    ]
    message = stack.sdk().messages.create(
        model=ANTHROPIC_MODEL, max_tokens=100, messages=[{"role": "user", "content": content}]
    )
    assert message.content[0].text.startswith("I see 1 images (url)")  # type: ignore[union-attr]
    sent = stack.fake_anthropic.received[-1].body["messages"][0]["content"]
    assert sent[0] == {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": pdf}}
    assert sent[1] == {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}


@pytest.mark.parametrize("model", [ANTHROPIC_MODEL, OPENAI_MODEL])
def test_a_request_shaped_like_claude_codes_is_served(stack: Stack, model: str):
    # Cache breakpoints, thinking, a user id and a beta header: each is accepted, none breaks a route.
    cached: Any = {"type": "ephemeral"}
    tool: Any = {**WEATHER_TOOL, "cache_control": cached}
    with stack.sdk().messages.stream(
        model=model,
        max_tokens=2000,
        system=[{"type": "text", "text": "You are a coding agent.", "cache_control": cached}],
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?", "cache_control": cached}]}
        ],
        tools=[tool],
        thinking={"type": "enabled", "budget_tokens": 1024},
        metadata={"user_id": "user_abc_session_1"},
        extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"},
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    if model == ANTHROPIC_MODEL:  # passed through: Anthropic gets all of it
        received = stack.fake_anthropic.received[-1]
        assert received.body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
        assert received.body["tools"][0]["cache_control"] == cached
        assert received.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    else:  # translated: what the OpenAI shape cannot carry is left out
        sent = stack.fake_openai.requests[-1].body
        assert "thinking" not in sent and "reasoning_effort" not in sent and "cache_control" not in str(sent)


@pytest.mark.parametrize(
    ("thinking", "config"),
    [
        ({"type": "enabled", "budget_tokens": 5000}, {"thinkingBudget": 5000, "includeThoughts": True}),
        ({"type": "adaptive"}, {"thinkingBudget": -1, "includeThoughts": True}),
        ({"type": "disabled"}, {"thinkingBudget": 0}),
    ],
)
def test_thinking_reaches_a_gemini_route_as_its_thinking_config(stack: Stack, thinking: Any, config: Any):
    raw = stack.sdk().messages.with_raw_response.create(
        model=GEMINI_MODEL, max_tokens=8000, messages=user("Think, then answer [[thoughts:40]]"), thinking=thinking
    )
    message = raw.parse()
    assert stack.fake_gemini.last.body["generationConfig"]["thinkingConfig"] == config
    assert "x-glasskey-dropped-params" not in raw.headers
    assert stack.receipt(raw.headers["x-request-id"])["dropped_params"] == []
    # Gemini's thought summary comes back as a thinking block, before the answer.
    kinds = [block.type for block in message.content]
    if config.get("includeThoughts"):
        assert kinds == ["thinking", "text"]
        assert message.content[0].thinking == THOUGHT_SUMMARY  # type: ignore[union-attr]
    else:
        assert kinds == ["text"]


def test_thinking_with_an_effort_on_a_gemini_route_names_the_effort_dropped(stack: Stack):
    raw = stack.sdk().messages.with_raw_response.create(
        model=GEMINI_MODEL,
        max_tokens=100,
        messages=user("hi"),
        thinking={"type": "enabled", "budget_tokens": 2048},
        extra_body={"output_config": {"effort": "low"}},
    )
    assert stack.fake_gemini.last.body["generationConfig"]["thinkingConfig"]["thinkingBudget"] == 2048
    assert raw.headers["x-glasskey-dropped-params"] == "output_config.effort"
    # Without thinking, the effort is Gemini's budget for that level.
    stack.sdk().messages.create(
        model=GEMINI_MODEL, max_tokens=100, messages=user("hi"), extra_body={"output_config": {"effort": "medium"}}
    )
    assert stack.fake_gemini.last.body["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 8192}


@pytest.mark.parametrize("stream", [False, True])
def test_thinking_on_an_openai_route_is_dropped_and_named(stack: Stack, stream: bool):
    params: Any = {
        "model": OPENAI_MODEL,
        "max_tokens": 2000,
        "messages": user("hi"),
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    }
    if stream:
        with stack.sdk().messages.with_streaming_response.create(**params, stream=True) as response:
            assert response.headers["x-glasskey-dropped-params"] == "thinking"
            request_id = response.headers["x-request-id"]
            assert "message_stop" in response.text()
    else:
        raw = stack.sdk().messages.with_raw_response.create(**params)
        assert raw.parse().content[0].type == "text"
        assert raw.headers["x-glasskey-dropped-params"] == "thinking"
        request_id = raw.headers["x-request-id"]
    sent = stack.fake_openai.requests[-1].body
    assert "thinking" not in sent and "reasoning_effort" not in sent
    assert stack.receipt(request_id)["dropped_params"] == ["thinking"]


def test_thinking_under_strict_params_is_a_400_naming_it_and_the_provider(stack: Stack):
    strict = stack.new_key(allowed_models=MODELS, strict_params=True)
    with pytest.raises(anthropic.BadRequestError) as caught:
        stack.sdk(strict).messages.create(
            model=OPENAI_MODEL, max_tokens=100, messages=user("hi"), thinking={"type": "disabled"}
        )
    error = caught.value.body["error"]  # type: ignore[index]
    assert caught.value.body["type"] == "error"  # type: ignore[index]
    assert error["type"] == "invalid_request_error" and error["source"] == "client"
    assert "`thinking`" in error["message"] and "openai provider" in error["message"]
    assert error["details"]["param"] == "thinking"
    assert not stack.fake_openai.requests  # refused before any upstream call
    # The same key's thinking to a Gemini route is translated, not refused.
    message = stack.sdk(strict).messages.create(
        model=GEMINI_MODEL, max_tokens=100, messages=user("hi"), thinking={"type": "enabled", "budget_tokens": 1024}
    )
    assert message.content[-1].type == "text"


def test_anthropic_beta_reaches_anthropic_routes_only(stack: Stack):
    for model in (ANTHROPIC_MODEL, OPENAI_MODEL):
        message = stack.sdk().messages.create(
            model=model, max_tokens=50, messages=user("hi"), extra_headers={"anthropic-beta": "context-1m-2025-08-07"}
        )
        assert message.content
    assert stack.fake_anthropic.received[-1].headers["anthropic-beta"] == "context-1m-2025-08-07"
    assert "anthropic-beta" not in stack.fake_openai.requests[-1].headers


def test_a_parameter_no_route_can_carry_is_a_400_naming_it_with_a_receipt(stack: Stack):
    with pytest.raises(anthropic.BadRequestError) as caught:
        stack.sdk().messages.create(model=OPENAI_MODEL, max_tokens=10, messages=user("x"), extra_body={"top_k": 5})
    error = caught.value.body["error"]  # type: ignore[index]
    assert error["type"] == "invalid_request_error" and error["source"] == "client"
    assert "`top_k`" in error["message"] and error["details"]["param"] == "top_k"
    assert stack.receipt(error["request_id"])["error_source"] == "client"


# -- token counting and the model list ------------------------------------------------------


def test_count_tokens_answers_an_estimate_without_a_charge_or_receipt(stack: Stack):
    key = stack.new_key(allowed_models=MODELS)
    sdk = stack.sdk(key)
    short = sdk.messages.count_tokens(model=OPENAI_MODEL, messages=user("hi"))
    long = sdk.messages.count_tokens(model=OPENAI_MODEL, system="Be brief.", messages=user("hi " * 200))
    assert 0 < short.input_tokens < long.input_tokens
    assert stack.receipts_of(key) == []
    with pytest.raises(anthropic.PermissionDeniedError):
        stack.sdk(stack.new_key(allowed_models=(OPENAI_MODEL,))).messages.count_tokens(
            model=ANTHROPIC_MODEL, messages=user("hi")
        )


def test_the_model_list_is_in_anthropics_shape_for_the_anthropic_sdk_only(stack: Stack):
    key = stack.new_key(allowed_models=(OPENAI_MODEL, ANTHROPIC_MODEL))
    page = stack.sdk(key).models.list()
    assert sorted(model.id for model in page.data) == [ANTHROPIC_MODEL, OPENAI_MODEL]
    assert all(model.type == "model" for model in page.data)
    one = stack.sdk(key).models.retrieve(ANTHROPIC_MODEL)
    assert (one.id, one.type) == (ANTHROPIC_MODEL, "model")
    with pytest.raises(anthropic.PermissionDeniedError):
        stack.sdk(key).models.retrieve(SIMULATED_MODEL)
    with pytest.raises(anthropic.NotFoundError):
        stack.sdk(key).models.retrieve("claude-9000")
    openai_shape = httpx.get(f"{stack.url}/v1/models", headers={"authorization": f"Bearer {key}"}).json()
    assert openai_shape["object"] == "list" and openai_shape["data"][0]["object"] == "model"


def test_the_key_explanation_names_the_anthropic_base_url(stack: Stack):
    explained = httpx.get(
        f"{stack.url}/v1/key", headers={"x-api-key": stack.key, "authorization": f"Bearer {stack.key}"}
    )
    public_url = stack.services.settings.effective_public_url
    assert explained.json()["base_urls"]["anthropic"] == {
        "base_url": public_url,
        "env": "ANTHROPIC_BASE_URL",
        "example": f'Anthropic(base_url="{public_url}", api_key=KEY)',
    }
    assert explained.json()["base_urls"]["openai"]["base_url"] == f"{public_url}/v1"


# -- keys, versions and errors --------------------------------------------------------------


def test_the_key_may_come_as_x_api_key_or_as_a_bearer_token(stack: Stack):
    by_bearer = Anthropic(base_url=stack.url, auth_token=stack.key, max_retries=0)
    assert by_bearer.messages.create(model=SIMULATED_MODEL, max_tokens=20, messages=user("hi")).content


@pytest.mark.parametrize("version", ["2023-06-01", anthropic._constants.ANTHROPIC_API_VERSION])
def test_the_classic_and_the_sdks_current_anthropic_version_both_work(stack: Stack, version: str):
    sdk = stack.sdk(default_headers={"anthropic-version": version})
    raw = sdk.messages.with_raw_response.create(model=OPENAI_MODEL, max_tokens=20, messages=user("hi"))
    assert raw.http_request.headers["anthropic-version"] == version
    assert raw.parse().content


def test_a_malformed_anthropic_version_is_a_400_in_anthropics_shape(stack: Stack):
    with pytest.raises(anthropic.BadRequestError) as caught:
        stack.sdk(default_headers={"anthropic-version": "latest"}).messages.create(
            model=OPENAI_MODEL, max_tokens=20, messages=user("hi")
        )
    assert caught.value.body["error"]["details"]["param"] == "anthropic-version"  # type: ignore[index]


def test_an_unknown_key_is_an_authentication_error_with_source_and_request_id(stack: Stack):
    bogus = "gk-aaaaaaaaaaaa-" + "b" * 40
    with pytest.raises(anthropic.AuthenticationError) as caught:
        stack.sdk(bogus, max_retries=2).messages.create(model=OPENAI_MODEL, max_tokens=20, messages=user("x"))
    error = caught.value
    assert error.type == "authentication_error"
    assert error.body["error"]["source"] == "key"  # type: ignore[index]
    assert error.request_id == error.response.headers["x-request-id"] == error.body["error"]["request_id"]  # type: ignore[index]
    assert "b" * 40 not in error.response.text
    failed = stack.receipt(error.request_id)
    assert (failed["error_source"], failed["endpoint"]) == ("key", "anthropic.messages")


def test_a_model_not_allowed_is_permission_denied_and_an_unknown_one_not_found(stack: Stack):
    narrow = stack.sdk(stack.new_key(allowed_models=(OPENAI_MODEL,)), max_retries=2)
    with pytest.raises(anthropic.PermissionDeniedError) as denied:
        narrow.messages.create(model=ANTHROPIC_MODEL, max_tokens=20, messages=user("x"))
    assert denied.value.type == "permission_error"
    assert denied.value.body["error"]["source"] == "model"  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError) as unknown:
        stack.sdk(stack.new_key(), max_retries=2).messages.create(
            model="claude-9000", max_tokens=20, messages=user("x")
        )
    assert unknown.value.type == "not_found_error"
    assert "claude-9000" in unknown.value.body["error"]["message"]  # type: ignore[index]


def test_an_empty_wallet_is_payment_required_and_the_sdk_retries_make_one_receipt(stack: Stack):
    with stack.services.db.write() as conn:
        poor = create_org(conn, f"poor-{uuid.uuid4().hex[:6]}", stack.services.clock())
    key = stack.new_key(org_id=poor.id)
    with pytest.raises(anthropic.PaymentRequiredError) as caught:
        stack.sdk(key, max_retries=3).messages.create(model=OPENAI_MODEL, max_tokens=20, messages=user("x"))
    error = caught.value
    assert error.type == "billing_error" and error.error_code == "insufficient_balance"
    assert error.body["error"]["source"] == "wallet"  # type: ignore[index]
    assert error.response.headers["x-should-retry"] == "false"
    assert len(stack.receipts_of(key)) == 1  # max_retries=3, one request: a lasting refusal is not retried


def test_a_spent_budget_is_a_rate_limit_error_that_the_sdk_does_not_retry(stack: Stack):
    key = stack.new_key(budget_total_micros=1)
    with pytest.raises(anthropic.RateLimitError) as caught:
        stack.sdk(key, max_retries=3).messages.create(model=OPENAI_MODEL, max_tokens=20, messages=user("x"))
    assert caught.value.body["error"]["source"] == "budget"  # type: ignore[index]
    assert len(stack.receipts_of(key)) == 1


def test_a_model_without_a_route_is_service_unavailable_and_not_retried(stack: Stack):
    key = stack.new_key()
    with pytest.raises(anthropic.ServiceUnavailableError) as caught:
        stack.sdk(key, max_retries=3).messages.create(model="claude-haiku-4-5", max_tokens=20, messages=user("x"))
    assert caught.value.body["error"]["source"] == "route"  # type: ignore[index]
    assert caught.value.error_code == "no_route"
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert len(stack.receipts_of(key)) == 1  # a 503 the SDK would retry, but no retry can add a route


def test_an_upstream_refusal_is_attributed_to_the_upstream(stack: Stack):
    with pytest.raises(anthropic.InternalServerError) as caught:
        stack.sdk().messages.create(model=OPENAI_MODEL, max_tokens=20, messages=user("x [fake:status=500]"))
    error = caught.value.body["error"]  # type: ignore[index]
    assert (error["source"], error["details"]["provider"], error["details"]["upstream_status"]) == (
        "upstream",
        "openai",
        500,
    )


# -- a stream cut mid-answer -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "directive"),
    [(OPENAI_MODEL, "[fake:cut=3]"), (ANTHROPIC_MODEL, "#fake:cut=3"), (GEMINI_MODEL, "[[cut:3]]")],
)
def test_a_stream_cut_mid_answer_ends_with_an_error_event_and_a_failed_receipt(
    stack: Stack, model: str, directive: str
):
    texts: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        stack.sdk().messages.stream(model=model, max_tokens=200, messages=user(f"Tell a story {directive}")) as stream,
    ):
        for text in stream.text_stream:
            texts.append(text)
    assert texts  # the answer had begun before the cut
    error = caught.value.body["error"]  # type: ignore[index]
    assert error["type"] == "api_error" and error["source"] == "upstream"
    receipt = settled_receipt(stack.services, error["request_id"])
    assert receipt["status"] == "failed" and receipt["error_source"] == "upstream"
    assert receipt["stream"] is True


def test_a_bug_behind_the_endpoint_is_a_500_in_anthropics_shape():
    async def broken_chat(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    settings = SimpleNamespace(request_body_max_bytes=1 << 20)
    lifecycle: Any = SimpleNamespace(services=SimpleNamespace(settings=settings), chat=broken_chat)
    app = Starlette(routes=routes_anthropic(lifecycle))
    app.add_middleware(RequestIdMiddleware)
    response = TestClient(app).post("/v1/messages", json={"model": "m", "max_tokens": 1, "messages": user("x")})
    assert response.status_code == 500
    error = response.json()["error"]
    assert (error["type"], error["details"]["error_code"]) == ("api_error", "internal_error")
    assert error["request_id"] == response.headers["x-request-id"] == response.headers["request-id"]
