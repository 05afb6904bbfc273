"""The Gemini API of the gateway, driven by the official ``google-genai`` SDK given only a base URL.

One gateway serves every provider's route, each ending at that provider's fake upstream (which
checks what it gets against its own SDK's types): ``gemini-2.5-flash`` at the fake Gemini,
``gpt-4o-mini`` at the fake OpenAI, ``claude-sonnet-4-5`` at the fake Anthropic, ``gpt-4o`` at the
built-in simulated provider. Every test ends with the ledger audit.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pydantic
import pytest
from google import genai
from google.genai import errors, types
from sqlalchemy import func, select

from conftest_helpers import make_settings
from fake_gemini import FAKE_API_KEY, THOUGHT_SUMMARY, FakeGemini
from fake_upstreams import fake_upstreams, funded_org, new_test_key, upstream_route
from gateway_fixtures import ServerThread, settled_receipt
from glasskey.app import build_app
from glasskey.ledger import audit
from glasskey.orgs.service import create_org
from glasskey.receipts.records import get_receipt
from glasskey.routing.routes import Route, create_route
from glasskey.services import Services, build_services
from glasskey.store.tables import receipts

OPENAI_CREDENTIAL = "sk-fake-openai-credential-0123456789"
ANTHROPIC_CREDENTIAL = "sk-ant-fake-credential-0123456789"
# Each chat model and the fake upstream (provider) that serves it, with the prompt that makes
# that fake call a tool and the word its answer to a tool result contains.
PROVIDERS = {
    "gemini-2.5-flash": "gemini",
    "gpt-4o-mini": "openai",
    "claude-sonnet-4-5": "anthropic",
    "gpt-4o": "simulated",
}
TOOL_PROMPTS = {
    "gemini-2.5-flash": "What is the weather in Paris? [[tool:get_weather]]",
    "gpt-4o-mini": "What is the weather in Paris?",
    "claude-sonnet-4-5": "What is the weather in Paris?",
}
WEATHER = types.Tool(
    function_declarations=[
        types.FunctionDeclaration(
            name="get_weather",
            description="The weather now",
            parameters_json_schema={
                "type": "object",
                "properties": {"location": {"type": "string"}, "unit": {"type": "string"}},
                "required": ["location"],
            },
        )
    ]
)
FALLBACK_MODEL = "gpt-4.1-mini"
PNG = b"\x89PNG\r\n\x1a\nfake-image-bytes"


@dataclass
class Stack:
    services: Services
    base_url: str
    key: str
    org_id: str
    gemini: FakeGemini

    def client(self, key: str | None = None, **options: Any) -> genai.Client:
        return genai.Client(api_key=key or self.key, http_options=types.HttpOptions(base_url=self.base_url, **options))

    def receipt(self, request_id: str) -> dict[str, Any]:
        with self.services.db.read() as conn:
            return get_receipt(conn, request_id)

    def settled_receipt(self, request_id: str) -> dict[str, Any]:
        """The receipt of a stream that failed in band: the client hears of it before it is written."""
        return settled_receipt(self.services, request_id)

    def receipt_count(self) -> int:
        with self.services.db.read() as conn:
            return int(conn.execute(select(func.count()).select_from(receipts)).scalar_one())

    def new_key(self, org_id: str | None = None, **policy: Any) -> str:
        return new_test_key(self.services, org_id or self.org_id, "gemini sdk", **policy)


def _routes(conn: Any, urls: dict[str, str]) -> Iterator[Route]:
    credentials = {"gemini": FAKE_API_KEY, "openai": OPENAI_CREDENTIAL, "anthropic": ANTHROPIC_CREDENTIAL}
    served = {**PROVIDERS, "gemini-embedding-001": "gemini", "text-embedding-3-small": "openai"}
    for model, provider in served.items():
        yield upstream_route(conn, model, provider, urls[provider], credential=credentials.get(provider))
    # gpt-4.1-mini: a gemini route first, an openai route as its backup (for keys that allow backups).
    for route_id, provider, upstream_model, priority in (
        ("rt-fallback-gemini", "gemini", "gemini-2.5-flash", 10),
        ("rt-fallback-openai", "openai", FALLBACK_MODEL, 20),
    ):
        yield upstream_route(
            conn,
            FALLBACK_MODEL,
            provider,
            urls[provider],
            credential=credentials[provider],
            route_id=route_id,
            upstream_model=upstream_model,
            priority=priority,
        )


@pytest.fixture(scope="module")
def module_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    services = build_services(make_settings(tmp_path_factory.mktemp("gemini-sdk")))
    with fake_upstreams(openai_credential=OPENAI_CREDENTIAL, anthropic_credential=ANTHROPIC_CREDENTIAL) as fakes:
        now = services.clock()
        with services.db.write() as conn:
            org_id = funded_org(conn, "acme", services)
            for route in _routes(conn, fakes.urls):
                create_route(conn, route, now)
        with ServerThread(build_app(services)) as gateway:
            stack = Stack(services, gateway.base_url, "", org_id, fakes.gemini)
            stack.key = stack.new_key(settlement="routed", lower_cost_routes=True)
            yield stack
    services.db.dispose()


@pytest.fixture
def stack(module_stack: Stack) -> Iterator[Stack]:
    yield module_stack
    health = module_stack.services.health
    for route_id in health.route_ids():
        # The failures a test provoked must not open a breaker for the next test: a forced state
        # that the next request lifts starts the breaker closed again.
        health.force(route_id, "closed")
    with module_stack.services.db.read() as conn:
        report = audit(conn)
    report.raise_if_broken()
    assert report.receipt_charges_micros == report.posted_charges_micros


def request_id_of(response: types.GenerateContentResponse) -> str:
    assert response.sdk_http_response is not None and response.sdk_http_response.headers is not None
    return response.sdk_http_response.headers["x-request-id"]


# -- generate and stream ----------------------------------------------------------------------


@pytest.mark.parametrize("model", list(PROVIDERS))
def test_generate_is_served_by_every_provider_billed_and_receipted(stack: Stack, model: str):
    client = stack.client()  # kept: a Client closes its connection pool once it is collected
    response = client.models.generate_content(
        model=model,
        contents="Say hello",
        config=types.GenerateContentConfig(system_instruction="Be brief.", max_output_tokens=200, temperature=0.2),
    )
    assert response.text
    assert response.candidates is not None and response.candidates[0].finish_reason == types.FinishReason.STOP
    usage = response.usage_metadata
    assert usage is not None and usage.prompt_token_count and usage.candidates_token_count
    receipt = stack.receipt(request_id_of(response))
    assert receipt["status"] == "succeeded" and receipt["endpoint"] == "gemini.generate_content"
    assert receipt["provider"] == PROVIDERS[model]
    assert receipt["requested_model"] == model
    assert receipt["input_tokens"] == usage.prompt_token_count
    assert receipt["charge_micros"] > 0
    headers = response.sdk_http_response.headers if response.sdk_http_response else {}
    assert headers and int(headers["x-glasskey-charge-micros"]) == receipt["charge_micros"]


@pytest.mark.parametrize("model", list(PROVIDERS))
def test_a_stream_matches_the_whole_answer_and_ends_with_usage(stack: Stack, model: str):
    client = stack.client()
    whole = client.models.generate_content(model=model, contents="Tell a story")
    chunks = list(client.models.generate_content_stream(model=model, contents="Tell a story"))
    assert "".join(chunk.text or "" for chunk in chunks) == whole.text
    last = chunks[-1]
    assert last.candidates and last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata is not None and whole.usage_metadata is not None
    assert last.usage_metadata.candidates_token_count == whole.usage_metadata.candidates_token_count
    receipt = stack.receipt(request_id_of(last))
    assert receipt["stream"] is True and receipt["status"] == "succeeded"
    assert receipt["endpoint"] == "gemini.generate_content"
    assert receipt["charge_micros"] == stack.receipt(request_id_of(whole))["charge_micros"] > 0


@pytest.mark.parametrize("model", list(TOOL_PROMPTS))
def test_a_tool_round_trip(stack: Stack, model: str):
    client = stack.client()
    config = types.GenerateContentConfig(tools=[WEATHER])
    question = types.Content(role="user", parts=[types.Part(text=TOOL_PROMPTS[model])])
    first = client.models.generate_content(model=model, contents=[question], config=config)
    assert first.function_calls and first.function_calls[0].name == "get_weather"
    assert first.function_calls[0].args  # each fake sends its own arguments, as an object
    assert first.candidates and first.candidates[0].content
    answer = types.Part.from_function_response(name="get_weather", response={"temperature": "21 degrees"})
    second = client.models.generate_content(
        model=model,
        contents=[question, first.candidates[0].content, types.Content(role="user", parts=[answer])],
        config=config,
    )
    assert second.text and "21 degrees" in second.text


@pytest.mark.parametrize("model", ["gemini-2.5-flash", "gpt-4o-mini"])
def test_an_inline_image_reaches_the_upstream(stack: Stack, model: str):
    client = stack.client()
    text_only = client.models.generate_content(model=model, contents="What is this?")
    parts = [types.Part.from_bytes(data=PNG, mime_type="image/png"), types.Part.from_text(text="What is this?")]
    with_image = client.models.generate_content(model=model, contents=types.Content(role="user", parts=parts))
    assert text_only.usage_metadata and with_image.usage_metadata
    assert (with_image.usage_metadata.prompt_token_count or 0) > (text_only.usage_metadata.prompt_token_count or 0)
    if model == "gemini-2.5-flash":
        sent = stack.gemini.last.body["contents"][0]["parts"][0]
        assert sent == {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}}
    else:
        assert with_image.text and "I see 1 images" in with_image.text


def test_thinking_and_a_json_schema_reach_a_gemini_route_and_thought_tokens_come_back(stack: Stack):
    class City(pydantic.BaseModel):
        name: str
        population: int

    client = stack.client()
    config = types.GenerateContentConfig(
        thinking_config=types.ThinkingConfig(thinking_budget=5000),
        response_mime_type="application/json",
        response_schema=City,
    )
    prompt = "A city [[thoughts:40]]"
    response = client.models.generate_content(model="gemini-2.5-flash", contents=prompt, config=config)
    sent = stack.gemini.last.body["generationConfig"]
    # A gemini route gets the exact budget, not the effort level it rounds to (medium, 8192).
    assert sent["thinkingConfig"] == {"thinkingBudget": 5000}
    assert sent["responseMimeType"] == "application/json"
    assert sent["responseJsonSchema"]["properties"]["population"]["type"] == "integer"
    assert response.usage_metadata is not None and response.usage_metadata.thoughts_token_count == 40
    assert response.text and json.loads(response.text)
    receipt = stack.receipt(request_id_of(response))
    assert receipt["output_tokens"] == 40 + (response.usage_metadata.candidates_token_count or 0)


def test_thought_summaries_asked_of_a_gemini_route_come_back_as_thought_parts(stack: Stack):
    config = types.GenerateContentConfig(
        thinking_config=types.ThinkingConfig(thinking_budget=2048, include_thoughts=True)
    )
    client = stack.client()  # kept: a client the garbage collector takes closes its connection
    response = client.models.generate_content(model="gemini-2.5-flash", contents="Hi [[thoughts:30]]", config=config)
    assert stack.gemini.last.body["generationConfig"]["thinkingConfig"] == {
        "thinkingBudget": 2048,
        "includeThoughts": True,
    }
    assert response.candidates and response.candidates[0].content and response.candidates[0].content.parts
    first, *rest = response.candidates[0].content.parts
    assert first.thought is True and first.text == THOUGHT_SUMMARY
    assert response.text == "".join(part.text or "" for part in rest) and THOUGHT_SUMMARY not in response.text
    assert stack.receipt(request_id_of(response))["dropped_params"] == []


def test_thought_summaries_asked_of_an_openai_route_are_dropped_and_named_or_refused_when_strict(stack: Stack):
    config = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(include_thoughts=True))
    client = stack.client()
    response = client.models.generate_content(model="gpt-4o-mini", contents="Hi", config=config)
    assert response.text
    assert response.sdk_http_response is not None and response.sdk_http_response.headers is not None
    named = "generationConfig.thinkingConfig.includeThoughts"
    assert response.sdk_http_response.headers["x-glasskey-dropped-params"] == named
    assert stack.receipt(request_id_of(response))["dropped_params"] == [named]
    strict = stack.new_key(settlement="routed", lower_cost_routes=True, strict_params=True)
    strict_client = stack.client(strict)
    with pytest.raises(errors.ClientError) as caught:
        strict_client.models.generate_content(model="gpt-4o-mini", contents="Hi", config=config)
    assert (
        caught.value.code == 400
        and named in str(caught.value.message)
        and "openai provider" in str(caught.value.message)
    )


def test_count_tokens_answers_without_a_receipt(stack: Stack):
    before = stack.receipt_count()
    client = stack.client()
    short = client.models.count_tokens(model="gemini-2.5-flash", contents="hello")
    long = client.models.count_tokens(model="gpt-4o-mini", contents="hello " * 200)
    assert short.total_tokens and long.total_tokens and long.total_tokens > short.total_tokens
    assert stack.receipt_count() == before


@pytest.mark.parametrize("model", ["gemini-embedding-001", "text-embedding-3-small"])
def test_embeddings_one_and_in_batches(stack: Stack, model: str):
    client = stack.client()
    texts: list[types.ContentUnion] = ["first text", "second text"]
    result = client.models.embed_content(model=model, contents=texts)
    assert result.embeddings and len(result.embeddings) == 2
    assert all(embedding.values for embedding in result.embeddings)
    one = httpx.post(
        f"{stack.base_url}/v1beta/models/{model}:embedContent",
        json={"content": {"parts": [{"text": "first text"}]}},
        headers={"x-goog-api-key": stack.key},
    )
    assert one.status_code == 200, one.text
    assert one.json()["embedding"]["values"] == result.embeddings[0].values
    receipt = stack.receipt(one.headers["x-request-id"])
    assert receipt["status"] == "succeeded" and receipt["endpoint"] == "gemini.embed_content"


@pytest.mark.parametrize("api_version", ["v1", "v1beta"])
def test_the_model_list_in_gemini_shape_and_the_openai_list_unchanged(stack: Stack, api_version: str):
    client = stack.client(api_version=api_version)
    names = {model.name for model in client.models.list()}
    assert {"models/gemini-2.5-flash", "models/gpt-4o-mini", "models/gemini-embedding-001"} <= names
    one = client.models.get(model="gemini-2.5-flash")
    assert one.supported_actions and "generateContent" in one.supported_actions
    with pytest.raises(errors.ClientError) as caught:
        client.models.get(model="gemini-0-nonexistent")
    assert caught.value.code == 404 and caught.value.status == "NOT_FOUND"
    openai_list = httpx.get(f"{stack.base_url}/v1/models", headers={"authorization": f"Bearer {stack.key}"})
    assert openai_list.json()["object"] == "list"
    assert "gpt-4o-mini" in {model["id"] for model in openai_list.json()["data"]}


def test_a_failed_route_falls_back_before_the_first_byte_in_json_and_in_a_stream(stack: Stack):
    client = stack.client(stack.new_key(backup_routes=True))
    prompt = "hello [[error:503]]"  # the fake Gemini fails it; the fake OpenAI reads no such directive
    whole = client.models.generate_content(model=FALLBACK_MODEL, contents=prompt)
    chunks = list(client.models.generate_content_stream(model=FALLBACK_MODEL, contents=prompt))
    assert whole.text and "".join(chunk.text or "" for chunk in chunks) == whole.text
    for response in (whole, chunks[-1]):
        receipt = stack.receipt(request_id_of(response))
        assert [(a["route_id"], a["status"]) for a in receipt["attempts"]] == [
            ("rt-fallback-gemini", "failed"),
            ("rt-fallback-openai", "succeeded"),
        ]
        assert receipt["provider"] == "openai" and receipt["status"] == "succeeded" and receipt["charge_micros"] > 0


# -- errors -----------------------------------------------------------------------------------


def google_error(caught: errors.APIError) -> tuple[dict[str, Any], dict[str, Any]]:
    """Google's error object as the SDK got it, and the gateway's detail inside it."""
    body = caught.details
    assert isinstance(body, dict) and set(body["error"]) == {"code", "message", "status", "details"}
    [info] = [d for d in body["error"]["details"] if d["@type"].endswith("google.rpc.ErrorInfo")]
    [glasskey] = [d for d in body["error"]["details"] if d["@type"] == "type.googleapis.com/glasskey.v1.Error"]
    assert info["metadata"]["request_id"] == glasskey["request_id"]
    assert info["metadata"]["source"] == glasskey["source"]
    return body["error"], glasskey


def empty_wallet_key(stack: Stack) -> str:
    with stack.services.db.write() as conn:
        org = create_org(conn, f"broke-{stack.receipt_count()}", stack.services.clock())
    return stack.new_key(org_id=org.id, settlement="routed", lower_cost_routes=True)


@pytest.mark.parametrize(
    ("case", "status", "status_name", "source", "exception"),
    [
        ("unknown key", 401, "UNAUTHENTICATED", "key", errors.ClientError),
        ("model not allowed", 403, "PERMISSION_DENIED", "model", errors.ClientError),
        ("unknown model", 404, "NOT_FOUND", "model", errors.ClientError),
        ("empty wallet", 402, "FAILED_PRECONDITION", "wallet", errors.ClientError),
        ("spent budget", 429, "RESOURCE_EXHAUSTED", "budget", errors.ClientError),
        ("upstream failure", 502, "UNAVAILABLE", "upstream", errors.ServerError),
        ("untranslatable field", 400, "INVALID_ARGUMENT", "client", errors.ClientError),
    ],
)
def test_every_error_class_in_googles_shape(stack, case, status, status_name, source, exception):
    key, model, prompt, config = stack.key, "gemini-2.5-flash", "hello", types.GenerateContentConfig()
    if case == "unknown key":
        key = "gk-aaaaaaaaaaaa-" + "b" * 40
    elif case == "model not allowed":
        key = stack.new_key(allowed_models=("gpt-4o-mini",), lower_cost_routes=True)
    elif case == "unknown model":
        model = "gemini-0-nonexistent"
    elif case == "empty wallet":
        key = empty_wallet_key(stack)
    elif case == "spent budget":
        key = stack.new_key(lower_cost_routes=True, budget_total_micros=1)
    elif case == "upstream failure":
        prompt = "hello [[error:500]]"
    else:
        config = types.GenerateContentConfig(top_k=5)
    client = stack.client(key)
    with pytest.raises(exception) as caught:
        client.models.generate_content(model=model, contents=prompt, config=config)
    assert caught.value.code == status and caught.value.status == status_name
    error, glasskey = google_error(caught.value)
    assert error["code"] == status and glasskey["source"] == source
    assert caught.value.response.headers["x-request-id"] == glasskey["request_id"]
    receipt = stack.receipt(glasskey["request_id"])
    assert receipt["status"] == "failed" and receipt["error_source"] == source and receipt["charge_micros"] == 0
    assert receipt["endpoint"] == "gemini.generate_content"
    if case == "untranslatable field":
        [bad] = [d for d in error["details"] if d["@type"].endswith("google.rpc.BadRequest")]
        assert bad["fieldViolations"][0]["field"] == "generationConfig.topK"
    if case == "unknown key":
        assert "b" * 40 not in caught.value.response.text


@pytest.mark.parametrize(("case", "status"), [("empty wallet", 402), ("not allowed", 403), ("unknown model", 404)])
def test_sdk_retries_do_not_multiply_receipts_of_a_permanent_refusal(stack, case, status):
    retrying = types.HttpRetryOptions(attempts=4, initial_delay=0.01, max_delay=0.02, jitter=0)
    key, model = stack.key, "gemini-2.5-flash"
    if case == "empty wallet":
        key = empty_wallet_key(stack)
    elif case == "not allowed":
        key = stack.new_key(allowed_models=("gpt-4o-mini",), lower_cost_routes=True)
    else:
        model = "gemini-0-nonexistent"
    client = stack.client(key, retry_options=retrying)
    before = stack.receipt_count()
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model=model, contents="hello")
    assert caught.value.code == status
    assert stack.receipt_count() == before + 1


def test_the_sdk_retries_a_429_by_status_alone_even_a_spent_budget_and_no_try_is_charged(stack):
    """google-genai ignores ``x-should-retry``: each try of a spent budget is a receipt (docs/providers.md)."""
    retrying = types.HttpRetryOptions(attempts=3, initial_delay=0.01, max_delay=0.02, jitter=0)
    key = stack.new_key(lower_cost_routes=True, budget_total_micros=1)
    client = stack.client(key, retry_options=retrying)
    before = stack.receipt_count()
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model="gemini-2.5-flash", contents="hello")
    assert caught.value.code == 429 and caught.value.response.headers["x-should-retry"] == "false"
    assert stack.receipt_count() == before + 3
    with stack.services.db.read() as conn:
        charged = conn.execute(
            select(func.sum(receipts.c.charge_micros)).where(receipts.c.key_public_id == key.split("-")[1])
        )
        assert not charged.scalar_one()


def test_a_transient_upstream_failure_is_retried_by_the_sdk_with_one_receipt_a_try(stack):
    retrying = types.HttpRetryOptions(attempts=3, initial_delay=0.01, max_delay=0.02, jitter=0)
    client = stack.client(retry_options=retrying)
    before = stack.receipt_count()
    with pytest.raises(errors.ServerError):
        client.models.generate_content(model="gemini-2.5-flash", contents="hello [[error:503]]")
    assert stack.receipt_count() == before + 3


@pytest.mark.parametrize(
    ("model", "prompt"), [("gemini-2.5-flash", "story [[cut:2]]"), ("gpt-4o-mini", "story [fake:cut=2]")]
)
def test_a_stream_cut_mid_answer_raises_in_the_sdk_and_bills_only_what_was_sent(stack, model, prompt):
    client = stack.client()
    received: list[types.GenerateContentResponse] = []
    with pytest.raises(errors.ServerError) as caught:
        for chunk in client.models.generate_content_stream(model=model, contents=prompt):
            received.append(chunk)
    assert received and "".join(chunk.text or "" for chunk in received)
    error, glasskey = google_error(caught.value)
    assert error["code"] == 502 and glasskey["source"] == "upstream"
    receipt = stack.settled_receipt(glasskey["request_id"])
    assert receipt["status"] == "failed" and receipt["stream"] is True
    assert receipt["charge_micros"] > 0  # the words that reached the client are paid for


def test_unknown_methods_and_paths_answer_in_googles_shape(stack):
    headers = {"x-goog-api-key": stack.key}
    for url in ("/v1beta/models/gemini-2.5-flash:predict", "/v1beta/files", "/v1/models/gemini-2.5-flash:predict"):
        response = httpx.post(f"{stack.base_url}{url}", json={}, headers=headers)
        assert response.status_code == 404, url
        assert response.json()["error"]["status"] == "NOT_FOUND"
    not_sse = httpx.post(
        f"{stack.base_url}/v1beta/models/gemini-2.5-flash:streamGenerateContent",
        json={"contents": [{"parts": [{"text": "hi"}]}]},
        headers=headers,
    )
    assert not_sse.status_code == 400 and "alt=sse" in not_sse.json()["error"]["message"]
    # GET /v1/models/{model} is Gemini's for a Google client only; the OpenAI API has no such path.
    bearer = {"authorization": f"Bearer {stack.key}"}
    openai_404 = httpx.get(f"{stack.base_url}/v1/models/gemini-2.5-flash", headers=bearer)
    assert openai_404.status_code == 404 and "type" in openai_404.json()["error"]
    gemini = httpx.get(f"{stack.base_url}/v1/models/gemini-2.5-flash", headers=headers)
    assert gemini.status_code == 200 and gemini.json()["name"] == "models/gemini-2.5-flash"


def test_the_key_in_the_query_is_never_logged_nor_stored(stack, caplog):
    caplog.set_level("DEBUG")
    key = stack.new_key(lower_cost_routes=True)
    secret = key.rsplit("-", 1)[1]
    body = {"contents": [{"parts": [{"text": "hello"}]}]}
    base = f"{stack.base_url}/v1beta/models"
    before = stack.receipt_count()
    answers = [
        httpx.post(f"{base}/gemini-2.5-flash:generateContent", params={"key": key}, json=body),
        httpx.post(f"{base}/gemini-2.5-flash:streamGenerateContent", params={"key": key, "alt": "sse"}, json=body),
        httpx.post(f"{base}/gemini-0-nonexistent:generateContent", params={"key": key}, json=body),
        httpx.post(f"{base}/gemini-2.5-flash:generateContent", params={"key": key}, json={"contents": "x"}),
        httpx.post(f"{base}/gemini-2.5-flash:nothing", params={"key": key}, json=body),
        httpx.get(f"{base}", params={"key": key}),
    ]
    assert [a.status_code for a in answers] == [200, 200, 404, 400, 404, 200]
    assert answers[1].text.startswith("data: ")
    for answer in answers:
        assert secret not in answer.text
    # The test's own client logs its URLs (with the key) in this thread: that shows the capture
    # works at DEBUG. The gateway serves from its server thread, and logs nothing of the key.
    mine = threading.get_ident()
    assert any(secret in record.getMessage() for record in caplog.records if record.thread == mine)
    assert not [r.getMessage() for r in caplog.records if r.thread != mine and secret in r.getMessage()]
    with stack.services.db.read() as conn:
        rows = [dict(row._mapping) for row in conn.execute(select(receipts))]
    # Four reached the lifecycle (the bad body too, refused before its key was read).
    assert len(rows) == before + 4
    assert secret not in repr(rows)


def test_the_key_explanation_names_the_gemini_base_url_which_the_sdk_reads_from_its_variable(stack, monkeypatch):
    explained = httpx.get(f"{stack.base_url}/v1/key", headers={"authorization": f"Bearer {stack.key}"}).json()
    public_url = stack.services.settings.effective_public_url
    assert explained["base_urls"]["gemini"] == {
        "base_url": public_url,
        "env": "GOOGLE_GEMINI_BASE_URL",
        "example": f'genai.Client(api_key=KEY, http_options={{"base_url": "{public_url}"}})',
    }
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", stack.base_url)
    client = genai.Client(api_key=stack.key)
    response = client.models.generate_content(model="gpt-4o", contents="hello")
    assert response.text and stack.receipt(request_id_of(response))["status"] == "succeeded"


@pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")  # the SDK's own
def test_the_async_client_streams_and_raises_a_cut_the_same_way(stack: Stack):
    client = stack.client()

    async def main() -> tuple[str, errors.APIError]:
        stream = await client.aio.models.generate_content_stream(model="gemini-2.5-flash", contents="Tell a story")
        text = "".join([chunk.text or "" async for chunk in stream])
        cut = await client.aio.models.generate_content_stream(model="gemini-2.5-flash", contents="story [[cut:2]]")
        with pytest.raises(errors.ServerError) as caught:
            async for _ in cut:
                pass
        await client.aio.aclose()
        return text, caught.value

    text, error = asyncio.run(main())
    assert text == client.models.generate_content(model="gemini-2.5-flash", contents="Tell a story").text
    assert error.code == 502 and google_error(error)[1]["source"] == "upstream"
