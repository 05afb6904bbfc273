"""The ``openai`` and ``openai_compatible`` providers: translation units, then the whole gateway.

The first half feeds the translation functions directly, streams included (from the recorded
SSE files, split at arbitrary byte boundaries). The second half runs the real gateway in front of
``fake_openai`` (a strict fake of the OpenAI API) and drives it with the official ``openai`` SDK,
as a user would: chat, streams, tools, images, ``n``/``stop``/``max_tokens``, embeddings, every
upstream error class, cut streams, and a canary credential that must never leak.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import struct
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from multidict import CIMultiDict
from openai import OpenAI
from sqlalchemy import MetaData, select

from conftest_helpers import make_settings
from fake_openai import (
    CHAT_TYPES,
    CHAT_VALIDATORS,
    ERRORS,
    FIXTURES,
    RETRY_AFTER_SECONDS,
    FakeOpenAI,
    check_request,
    fixture_json,
    recorded_chunks,
)
from gateway_fixtures import ServerThread, free_port
from glasskey.app import build_app
from glasskey.keys.policy import KeyPolicy
from glasskey.keys.service import create_key
from glasskey.ledger import audit
from glasskey.orgs.service import create_org, top_up
from glasskey.pricing.catalog import get_model
from glasskey.pricing.metering import charge_for
from glasskey.providers.base import ProviderError, StreamCut, Usage
from glasskey.providers.http import UpstreamHTTP, UpstreamHTTPError
from glasskey.providers.openai import (
    OpenAICompatibleProvider,
    OpenAIProvider,
    chat_request,
    embeddings_request,
    float_vectors,
    http_error,
    translate_stream,
    usage_body,
    usage_of,
)
from glasskey.providers.simulated import SimulatedProvider
from glasskey.providers.sse import Event, SSEParser
from glasskey.routing.health import BreakerPolicy, HealthBoard
from glasskey.routing.routes import Route, create_route, get_route, update_route
from glasskey.services import Services, build_services
from scripted_upstream import Answer as Scripted
from scripted_upstream import body_of, scripted_upstream

CREDENTIAL = "sk-test-7f3a9c0e5b1d4a2f8e6c0b9d"
UPSTREAM_MODEL = "gpt-4o-mini-2024-07-18"
STREAMS = sorted(path.name for path in FIXTURES.glob("stream_*.sse"))
COMPLETIONS = sorted(path.name for path in FIXTURES.glob("chat_completion_*.json"))


# == translation units ====================================================================


def test_chat_request_changes_only_the_model():
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "temperature": 0.2,
        "n": 2,
        "stop": ["x"],
        "max_tokens": 9,
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "response_format": {"type": "json_object"},
        "user": "u-1",
    }
    upstream = chat_request(body, UPSTREAM_MODEL, stream=False)
    assert upstream == {**body, "model": UPSTREAM_MODEL}
    assert body["model"] == "gpt-4o-mini"  # the client's body is not mutated


def test_stream_request_forces_usage_and_keeps_the_clients_other_stream_options():
    body = {"model": "m", "messages": [], "stream": True, "stream_options": {"include_obfuscation": False}}
    upstream = chat_request(body, UPSTREAM_MODEL, stream=True)
    assert upstream["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    assert chat_request({"model": "m", "messages": []}, "u", stream=True)["stream_options"] == {"include_usage": True}
    assert body["stream_options"] == {"include_obfuscation": False}


def test_base64_vectors_from_a_host_that_ignored_float_are_decoded():
    vector = [0.5, -0.25, 1.0]
    packed = base64.b64encode(struct.pack("<3f", *vector)).decode()
    body = {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": packed}]}
    assert float_vectors("openai_compatible", body)["data"][0]["embedding"] == vector
    with pytest.raises(ProviderError) as caught:
        float_vectors("openai_compatible", {"data": [{"embedding": "not base64!"}]})
    assert caught.value.status == 502


def test_embeddings_request_asks_for_floats_only_when_an_encoding_is_named():
    assert embeddings_request({"model": "e", "input": "x"}, "up") == {"model": "up", "input": "x"}
    forced = embeddings_request({"model": "e", "input": "x", "encoding_format": "base64", "dimensions": 8}, "up")
    assert forced == {"model": "up", "input": "x", "encoding_format": "float", "dimensions": 8}


@pytest.mark.parametrize("name", COMPLETIONS)
def test_recorded_completions_map_to_usage(name):
    reported = fixture_json(name)["usage"]
    assert usage_of(reported) == Usage(reported["prompt_tokens"], reported["completion_tokens"], 0)


def test_usage_mapping_keeps_cached_tokens_inside_prompt_tokens():
    reported = {"prompt_tokens": 100, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 64}}
    assert usage_of(reported) == Usage(100, 7, 64)
    assert usage_body(reported) == {**reported, "total_tokens": 107}
    # DeepSeek-style hosts report cache hits beside the prompt tokens.
    assert usage_of({"prompt_tokens": 10, "completion_tokens": 2, "prompt_cache_hit_tokens": 4}) == Usage(10, 2, 4)


@pytest.mark.parametrize(
    ("reported", "expected"),
    [
        ({"prompt_tokens": -5, "completion_tokens": 3}, Usage(-5, 3, 0)),  # the gateway clamps and flags
        ({"prompt_tokens": 5.0, "completion_tokens": 3}, Usage(5, 3, 0)),
        ({"prompt_tokens": 5, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 9}}, Usage(5, 3, 9)),
        ({"prompt_tokens": 5}, None),  # half a usage is no usage: the gateway estimates
        ({"prompt_tokens": "5", "completion_tokens": 3}, None),
        ({"prompt_tokens": True, "completion_tokens": 3}, None),
        ({"total_tokens": 8}, None),
        (None, None),
        ("12", None),
    ],
)
def test_untrusted_usage_never_crashes(reported, expected):
    assert usage_of(reported) == expected


async def _events(raw: bytes, piece_bytes: int = 37) -> AsyncIterator[Event]:
    """Raw SSE bytes cut into arbitrary pieces, as a network delivers them."""
    parser = SSEParser()
    for start in range(0, len(raw), piece_bytes):
        for event in parser.feed(raw[start : start + piece_bytes]):
            yield event
    for event in parser.close():
        yield event


def translate(raw: bytes, credential: str | None = None) -> tuple[list[dict[str, Any]], ProviderError | None]:
    async def collect() -> tuple[list[dict[str, Any]], ProviderError | None]:
        chunks: list[dict[str, Any]] = []
        try:
            async for chunk in translate_stream("openai", _events(raw), UPSTREAM_MODEL, credential):
                assert isinstance(chunk, dict)  # no PAUSE: the events carry none
                chunks.append(chunk)
        except ProviderError as error:
            return chunks, error
        return chunks, None

    return asyncio.run(collect())


def sse(*payloads: Any) -> bytes:
    import json

    return b"".join(
        b"data: " + (p.encode() if isinstance(p, str) else json.dumps(p).encode()) + b"\n\n" for p in payloads
    )


@pytest.mark.parametrize("name", STREAMS)
def test_recorded_streams_pass_through_chunk_for_chunk_with_usage_last(name):
    chunks, error = translate((FIXTURES / name).read_bytes())
    assert error is None
    assert chunks == recorded_chunks(name)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0


def test_stream_translation_is_incremental():
    """Each chunk leaves as soon as its event arrives, not when the stream ends."""
    consumed: list[int] = []

    async def events() -> AsyncIterator[Event]:
        for index, chunk in enumerate(recorded_chunks("stream_e2aad469b71d.sse")):
            consumed.append(index)
            import json

            yield Event("message", json.dumps(chunk))
        consumed.append(-1)
        yield Event("message", "[DONE]")

    async def first() -> dict[str, Any]:
        stream = translate_stream("openai", events(), UPSTREAM_MODEL, None)
        chunk = await anext(stream)
        await stream.aclose()
        assert isinstance(chunk, dict)
        return chunk

    assert asyncio.run(first())["choices"][0]["delta"]["role"] == "assistant"
    assert consumed == [0]


def test_a_recorded_stream_cut_before_its_finish_raises_stream_cut_after_the_content():
    raw = (FIXTURES / "stream_e2aad469b71d.sse").read_bytes()
    cut = raw[: raw.index(b'"finish_reason":"stop"')].rsplit(b"\n\n", 1)[0] + b"\n\n"
    chunks, error = translate(cut)
    assert isinstance(error, StreamCut) and error.status == 502 and error.error_type == "stream_cut"
    assert len(chunks) == len(recorded_chunks("stream_e2aad469b71d.sse")) - 2
    assert all("usage" not in chunk for chunk in chunks)


def test_a_stream_with_only_done_is_cut():
    chunks, error = translate(sse("[DONE]"))
    assert chunks == [] and isinstance(error, StreamCut)


def test_an_in_stream_error_is_a_cut_with_the_upstreams_type_and_no_credential():
    first = recorded_chunks("stream_e2aad469b71d.sse")[0]
    error_event = {"error": {"message": f"boom for {CREDENTIAL}", "type": "server_error", "code": None}}
    chunks, error = translate(sse(first, error_event), credential=CREDENTIAL)
    assert chunks == [first]
    assert isinstance(error, StreamCut)
    assert (error.status, error.error_type) == (502, "server_error")
    assert CREDENTIAL not in error.message and "boom" in error.message
    # A host that names the HTTP status in ``code`` (and uses ``event: error``) keeps it.
    raw = b'event: error\ndata: {"error": {"message": "slow down", "type": "rate_limit", "code": 429}}\n\n'
    _, error = translate(raw)
    assert isinstance(error, StreamCut) and (error.status, error.error_type) == (429, "rate_limit")


def test_usage_on_every_chunk_leaves_the_content_chunks_and_arrives_once_at_the_end():
    recorded = recorded_chunks("stream_83b060bae42e.sse")
    *content, usage_chunk = recorded
    running = [
        {**chunk, "usage": {"prompt_tokens": 9, "completion_tokens": i, "total_tokens": 9 + i}}
        for i, chunk in enumerate(content)
    ]
    running[-1]["usage"] = usage_chunk["usage"]
    chunks, error = translate(sse(*running))  # and no [DONE]
    assert error is None
    assert [c["choices"] for c in chunks[:-1]] == [c["choices"] for c in content]
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["object"] == "chat.completion.chunk"
    assert usage_of(chunks[-1]["usage"]) == Usage(9, 2, 0)


def test_a_cut_stream_from_a_host_that_counts_as_it_goes_ends_with_its_running_usage():
    role, foo, *_ = recorded_chunks("stream_83b060bae42e.sse")
    running = [{**chunk, "usage": {"prompt_tokens": 9, "completion_tokens": i}} for i, chunk in enumerate((role, foo))]
    chunks, error = translate(sse(*running))
    assert isinstance(error, StreamCut)
    assert [c["choices"] for c in chunks[:2]] == [role["choices"], foo["choices"]]
    assert chunks[2]["choices"] == [] and usage_of(chunks[2]["usage"]) == Usage(9, 1, 0)


def test_embeddings_from_a_host_decode_base64_and_read_a_total_only_usage():
    import json

    packed = base64.b64encode(struct.pack("<2f", 0.5, -0.25)).decode()
    data = [{"object": "embedding", "index": 0, "embedding": packed}]
    answer = json.dumps({"object": "list", "data": data, "usage": {"total_tokens": 4}}).encode()

    from glasskey.providers.base import RouteTarget

    with scripted_upstream(lambda request: Scripted(200, body_of(answer))) as (base_url, seen):
        provider = OpenAICompatibleProvider(UpstreamHTTP())
        target = RouteTarget("rt", "openai_compatible", f"{base_url}/v1/", "e5", CREDENTIAL)
        result = asyncio.run(provider.embed(target, {"model": "e", "input": "hi", "encoding_format": "base64"}))
    assert result.body["data"][0]["embedding"] == [0.5, -0.25] and result.body["model"] == "e5"
    assert result.usage == Usage(4, 0)
    assert [(r.path, json.loads(r.body)) for r in seen] == [
        ("/v1/embeddings", {"model": "e5", "input": "hi", "encoding_format": "float"})
    ]


def test_a_host_without_usage_ends_without_a_usage_chunk():
    *content, _ = recorded_chunks("stream_83b060bae42e.sse")
    for chunk in content:
        chunk.pop("model")  # and without naming its model
    chunks, error = translate(sse(*content, "[DONE]"))
    assert error is None and len(chunks) == len(content)
    assert all(c["choices"] and c["model"] == UPSTREAM_MODEL for c in chunks)


def test_invalid_json_mid_stream_is_a_cut():
    first = recorded_chunks("stream_e2aad469b71d.sse")[0]
    chunks, error = translate(sse(first, "{not json"))
    assert len(chunks) == 1 and isinstance(error, StreamCut) and error.error_type == "invalid_stream"


def upstream_error(status: int, body: bytes, **headers: str) -> UpstreamHTTPError:
    return UpstreamHTTPError(status, CIMultiDict(headers), body)


@pytest.mark.parametrize(
    ("body", "message", "error_type"),
    [
        (
            b'{"error": {"message": "Rate limit reached", "type": "requests", "param": null, "code": "rate_limit"}}',
            "Rate limit reached",
            "requests",
        ),
        (
            b'{"error": {"message": "no such model", "type": null, "code": "model_not_found"}}',
            "no such model",
            "model_not_found",
        ),
        (b'{"error": "bare string error"}', "bare string error", "upstream_error"),
        (b'{"detail": "Not authenticated"}', "Not authenticated", "upstream_error"),
        (b'{"detail": [{"msg": "field required"}, {"msg": "bad type"}]}', "field required; bad type", "upstream_error"),
        (
            b'{"object": "error", "message": "vLLM says no", "type": "BadRequestError", "code": 400}',
            "vLLM says no",
            "BadRequestError",
        ),
        (b"<html>502 Bad Gateway</html>", "HTTP 429: <html>502 Bad Gateway</html>", "upstream_error"),
        (b"", "HTTP 429 with an empty body", "upstream_error"),
    ],
)
def test_error_bodies_of_openai_and_compatible_hosts(body, message, error_type):
    error = http_error("openai_compatible", upstream_error(429, body, **{"retry-after": "3"}), CREDENTIAL)
    assert (error.provider, error.status, error.message, error.error_type) == (
        "openai_compatible",
        429,
        message,
        error_type,
    )
    assert error.retry_after == "3"


def test_error_messages_are_scrubbed_and_retry_after_ms_becomes_seconds():
    body = b'{"error": {"message": "Incorrect API key provided: ' + CREDENTIAL.encode() + b'", "type": "x"}}'
    error = http_error("openai", upstream_error(401, body, **{"retry-after-ms": "1500"}), CREDENTIAL)
    assert CREDENTIAL not in error.message and CREDENTIAL[5:20] not in error.message
    assert error.status == 401 and error.retry_after == "2"


def test_a_route_without_credential_fails_for_openai_but_not_for_a_compatible_host():
    from glasskey.providers.base import RouteTarget

    target = RouteTarget("rt", "openai", "http://127.0.0.1:9/v1", "m", None)
    with pytest.raises(ProviderError) as caught:
        asyncio.run(OpenAIProvider(UpstreamHTTP()).chat(target, {"model": "m", "messages": []}))
    assert caught.value.status == 502 and caught.value.error_type == "configuration_error"
    compatible = OpenAICompatibleProvider(UpstreamHTTP())
    assert "authorization" not in compatible._headers(target, None)


def test_route_headers_never_replace_the_credential():
    from glasskey.providers.base import RouteTarget

    options = {
        "headers": {
            "Authorization": "Bearer evil",
            "X-Title": "glasskey",
            "Content-Length": "1",
            "n": 5,
            "x-a": "1\r\nb: 2",
        }
    }
    target = RouteTarget("rt", "openai_compatible", "http://h/v1", "m", CREDENTIAL, options)
    headers = OpenAICompatibleProvider(UpstreamHTTP())._headers(target, CREDENTIAL)
    assert headers["authorization"] == f"Bearer {CREDENTIAL}"
    assert headers["x-title"] == "glasskey" and not {"content-length", "n", "x-a"} & set(headers)


@pytest.mark.parametrize(
    "bad",
    [
        {"max_token": 5},  # misnamed top-level field
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"uri": "https://x"}}]}]},
        {"messages": [{"role": "tool", "content": "r", "tool_id": "call_1"}]},
        {"messages": [{"role": "user", "content": "hi", "text": "hi"}]},
        {"tools": [{"type": "function", "function": {"name": "f", "params": {}}}]},
        {"stream_options": {"include_usage": True, "usage": True}},
    ],
)
def test_the_fake_refuses_misnamed_fields_at_any_depth(bad):
    good = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert check_request(good, CHAT_TYPES[False], CHAT_VALIDATORS[False]) is None
    assert check_request({**good, **bad}, CHAT_TYPES[False], CHAT_VALIDATORS[False]) is not None


# == through the gateway ==================================================================


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    upstream = FakeOpenAI(credential=CREDENTIAL)
    with ServerThread(upstream.app) as server:
        upstream.base_url = server.base_url
        yield upstream


@dataclass
class Env:
    """A gateway whose ``gpt-4o-mini`` and ``text-embedding-3-small`` routes end at the fake."""

    fake: FakeOpenAI
    services: Services
    url: str
    key: str
    provider: str

    @property
    def v1(self) -> str:
        return f"{self.url}/v1"

    def sdk(self) -> OpenAI:
        return OpenAI(base_url=self.v1, api_key=self.key, max_retries=0)

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{self.v1}/{path}", json=body, headers={"authorization": f"Bearer {self.key}"}, timeout=30)

    def receipt(self, request_id: str) -> dict[str, Any]:
        response = httpx.get(f"{self.v1}/receipts/{request_id}", headers={"authorization": f"Bearer {self.key}"})
        assert response.status_code == 200
        found: dict[str, Any] = response.json()
        return found

    def last_receipt(self) -> dict[str, Any]:
        response = httpx.get(f"{self.v1}/receipts", headers={"authorization": f"Bearer {self.key}"})
        latest: dict[str, Any] = response.json()["data"][0]
        return latest

    def route(self, **changes: Any) -> Route:
        with self.services.db.write() as conn:
            return update_route(conn, "rt-chat", **changes)

    def prices(self) -> Any:
        with self.services.db.read() as conn:
            return get_route(conn, "rt-chat").prices

    def audit_ok(self) -> None:
        with self.services.db.read() as conn:
            report = audit(conn)
        report.raise_if_broken()
        assert report.receipt_charges_micros == report.posted_charges_micros


@dataclass
class Gateway:
    """One running gateway whose routes use ``provider``; the module's tests share it."""

    services: Services
    url: str
    org_id: str
    provider: str
    base_url: str  # the fake's, as routes name it


def _routes(provider: str, base_url: str, conn: Any) -> list[Route]:
    routes = []
    for route_id, model, upstream_model in (
        ("rt-chat", "gpt-4o-mini", UPSTREAM_MODEL),
        ("rt-embed", "text-embedding-3-small", "text-embedding-3-small"),
    ):
        prices = get_model(conn, model).official_prices
        routes.append(
            Route(
                id=route_id,
                model=model,
                provider=provider,
                base_url=base_url,
                upstream_model=upstream_model,
                settlement="routed",
                prices=prices,
                costs=prices,
                credential=CREDENTIAL,
            )
        )
    return routes


@contextmanager
def _start(provider: str, fake: FakeOpenAI, data_dir: Path, environ: dict[str, str] | None = None) -> Iterator[Gateway]:
    http = UpstreamHTTP(environ=environ or {})
    services = build_services(
        make_settings(data_dir),
        providers={
            "openai": OpenAIProvider(http),
            "openai_compatible": OpenAICompatibleProvider(http),
            "simulated": SimulatedProvider(),
        },
    )
    base_url = f"{fake.base_url}/v1"
    now = services.clock()
    with services.db.write() as conn:
        org = create_org(conn, "acme", now)
        top_up(conn, org.id, "routed", 500_000_000, now)
        for route in _routes(provider, base_url, conn):
            create_route(conn, route, now)
    with ServerThread(build_app(services)) as server:
        yield Gateway(services=services, url=server.base_url, org_id=org.id, provider=provider, base_url=base_url)
    services.db.dispose()


def _env(gateway: Gateway, fake: FakeOpenAI) -> Env:
    """A clean slate on a running gateway: seeded routes, a fresh key, a quiet fake, closed breakers."""
    services = gateway.services
    fake.credential = CREDENTIAL
    fake.requests.clear()
    # These tests fail one route many times in a row on purpose; the breaker is tested elsewhere.
    services.health = HealthBoard(time.monotonic, BreakerPolicy(consecutive_failures=10**6, minimum_requests=10**6))
    with services.db.write() as conn:
        for route in _routes(gateway.provider, gateway.base_url, conn):
            update_route(conn, route.id, base_url=route.base_url, credential=route.credential, options={})
        _, key = create_key(
            conn,
            pepper=services.pepper,
            org_id=gateway.org_id,
            name="tests",
            policy=KeyPolicy(settlement="routed"),
            now=services.clock(),
        )
    return Env(fake=fake, services=services, url=gateway.url, key=key, provider=gateway.provider)


@pytest.fixture(scope="module")
def gateways(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Gateway]]:
    with ExitStack() as stack:
        yield {
            name: stack.enter_context(_start(name, fake, tmp_path_factory.mktemp(name)))
            for name in ("openai", "openai_compatible")
        }


@pytest.fixture(params=["openai", "openai_compatible"])
def env(request: pytest.FixtureRequest, gateways: dict[str, Gateway], fake: FakeOpenAI) -> Env:
    return _env(gateways[request.param], fake)


@pytest.fixture
def openai_env(gateways: dict[str, Gateway], fake: FakeOpenAI) -> Env:
    return _env(gateways["openai"], fake)


@pytest.fixture
def compatible_env(gateways: dict[str, Gateway], fake: FakeOpenAI) -> Env:
    return _env(gateways["openai_compatible"], fake)


def chat_of(env: Env) -> list[dict[str, Any]]:
    return [r.body for r in env.fake.requests if r.path == "/v1/chat/completions"]


def data_events(response: httpx.Response) -> list[str]:
    return [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: ")]


# -- chat ---------------------------------------------------------------------------------


def test_plain_chat_is_passed_through_and_billed_from_the_reported_usage(env):
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is the weather in San Francisco?"},
    ]
    raw = env.sdk().chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=messages, temperature=0.3, top_p=0.9, seed=7, user="u-42"
    )
    completion = raw.parse()
    recorded = fixture_json("chat_completion_00.json")
    assert completion.choices[0].message.content == recorded["choices"][0]["message"]["content"]
    assert completion.model == UPSTREAM_MODEL
    assert completion.system_fingerprint == recorded["system_fingerprint"]
    [sent] = env.fake.requests
    assert sent.body == {
        "model": UPSTREAM_MODEL,
        "messages": messages,
        "temperature": 0.3,
        "top_p": 0.9,
        "seed": 7,
        "user": "u-42",
    }
    assert sent.headers["authorization"] == f"Bearer {CREDENTIAL}"
    assert sent.path == "/v1/chat/completions" and CREDENTIAL not in sent.url
    receipt = env.receipt(raw.headers["x-request-id"])
    assert completion.usage is not None
    assert (receipt["input_tokens"], receipt["output_tokens"]) == (
        completion.usage.prompt_tokens,
        completion.usage.completion_tokens,
    )
    assert receipt["provider"] == env.provider and receipt["upstream_model"] == UPSTREAM_MODEL
    assert receipt["usage_source"] == "provider_reported" and receipt["status"] == "succeeded"
    expected = charge_for(Usage(completion.usage.prompt_tokens, completion.usage.completion_tokens), env.prices())
    assert receipt["charge_micros"] == int(raw.headers["x-glasskey-charge-micros"]) == expected > 0
    env.audit_ok()


def test_cached_tokens_are_billed_at_the_cached_price(openai_env):
    completion = openai_env.sdk().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "weather " * 1200 + "[fake:usage=1000,10,800]"}]
    )
    assert completion.usage is not None and completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 800
    receipt = openai_env.last_receipt()
    assert (receipt["input_tokens"], receipt["cached_tokens"], receipt["output_tokens"]) == (1000, 800, 10)
    assert receipt["charge_micros"] == charge_for(Usage(1000, 10, 800), openai_env.prices())
    openai_env.audit_ok()


def test_stream_with_include_usage_reports_the_upstreams_usage_last(env):
    chunks = list(
        env.sdk().chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Tell me the weather"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == fixture_json("chat_completion_00.json")["choices"][0]["message"]["content"]
    assert all(c.usage is None for c in chunks[:-1])
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    assert usage.completion_tokens == len(text.split()) and usage.prompt_tokens == 4
    [sent] = chat_of(env)
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    receipt = env.last_receipt()
    assert (receipt["input_tokens"], receipt["output_tokens"]) == (usage.prompt_tokens, usage.completion_tokens)
    assert receipt["usage_source"] == "provider_reported" and receipt["ttft_ms"] is not None
    assert receipt["charge_micros"] == charge_for(Usage(usage.prompt_tokens, usage.completion_tokens), env.prices())
    env.audit_ok()


def test_stream_without_include_usage_is_still_billed_from_the_upstreams_usage(env):
    chunks = list(
        env.sdk().chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Tell me the weather"}], stream=True
        )
    )
    assert all(c.usage is None and c.choices for c in chunks)
    assert chat_of(env)[0]["stream_options"] == {"include_usage": True}
    receipt = env.last_receipt()
    assert receipt["usage_source"] == "provider_reported" and receipt["output_tokens"] > 0
    env.audit_ok()


def test_a_recorded_stream_of_three_choices_reaches_the_client_whole(env):
    chunks = list(
        env.sdk().chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "weather [fake:replay=stream_a491adda08c3]"}],
            n=3,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    recorded = recorded_chunks("stream_a491adda08c3.sse")
    for index in range(3):
        got = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices and c.choices[0].index == index)
        want = "".join(
            c["choices"][0]["delta"].get("content") or ""
            for c in recorded
            if c["choices"] and c["choices"][0]["index"] == index
        )
        assert got == want and got
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 42
    assert env.last_receipt()["output_tokens"] == 42
    env.audit_ok()


def test_tool_calling_round_trip(env):
    sdk = env.sdk()
    tools: list[Any] = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ]
    messages: list[Any] = [{"role": "user", "content": "What is the weather in San Francisco?"}]
    first = sdk.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=tools, tool_choice="auto")
    assert first.choices[0].finish_reason == "tool_calls"
    call = first.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and '"city":"San Francisco"' in call.function.arguments

    # The same call streamed: the arguments arrive in pieces and join up.
    streamed = list(sdk.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=tools, stream=True))
    pieces = [tc for c in streamed if c.choices for tc in c.choices[0].delta.tool_calls or ()]
    assert pieces[0].id == call.id and pieces[0].function.name == "get_weather"
    assert "".join(p.function.arguments or "" for p in pieces) == call.function.arguments
    assert [c.choices[0].finish_reason for c in streamed if c.choices][-1] == "tool_calls"

    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "18 degrees and foggy"},
    ]
    second = sdk.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=tools)
    assert second.choices[0].message.content == f"The tool {call.id} answered: 18 degrees and foggy"
    assert chat_of(env)[-1]["messages"][1:] == [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "18 degrees and foggy"},
    ]
    assert [r["status"] for r in _receipts(env)] == ["succeeded"] * 3
    env.audit_ok()


def test_image_parts_by_url_and_base64_reach_the_upstream_unchanged(env):
    png = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
    content: list[Any] = [
        {"type": "text", "text": "What is in these images?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": png}},
    ]
    completion = env.sdk().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": content}])
    assert completion.choices[0].message.content.startswith("I see 2 images: https://example.com/cat.jpg")
    assert chat_of(env)[0]["messages"][0]["content"] == content
    assert completion.usage is not None and completion.usage.prompt_tokens == 5 + 2 * 85
    env.audit_ok()


def test_n_stop_and_max_tokens_are_honoured_upstream(env):
    sdk = env.sdk()
    both = sdk.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "weather?"}], n=2, stop=["San Francisco"]
    )
    assert [c.index for c in both.choices] == [0, 1]
    assert (
        both.choices[0].message.content
        == "I'm unable to provide real-time weather updates. To get the current weather in "
    )
    assert both.choices[1].message.content.startswith("Choice 1: I'm unable")
    assert all(c.finish_reason == "stop" for c in both.choices)
    capped = sdk.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "weather?"}], max_tokens=3
    )
    assert capped.choices[0].message.content == "I'm unable to"
    assert capped.choices[0].finish_reason == "length"
    assert capped.usage is not None and capped.usage.completion_tokens == 3
    newer = sdk.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "weather?"}], max_completion_tokens=2
    )
    assert newer.choices[0].finish_reason == "length"
    sent = chat_of(env)
    assert (sent[0]["n"], sent[0]["stop"], sent[1]["max_tokens"], sent[2]["max_completion_tokens"]) == (
        2,
        ["San Francisco"],
        3,
        2,
    )
    receipts = _receipts(env)
    assert receipts[1]["output_tokens"] == 3
    assert receipts[0]["output_tokens"] == both.usage.completion_tokens
    env.audit_ok()


def test_a_field_openai_does_not_know_is_refused_by_the_upstream_never_dropped(env):
    with pytest.raises(openai.BadRequestError) as caught:
        env.sdk().chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], extra_body={"max_tokenz": 5}
        )
    error = caught.value.body
    assert isinstance(error, dict)
    assert (error["source"], error["provider"], error["upstream_status"]) == ("upstream", env.provider, 400)
    assert "max_tokenz" in error["message"]
    env.audit_ok()


def _receipts(env: Env) -> list[dict[str, Any]]:
    response = httpx.get(f"{env.v1}/receipts", headers={"authorization": f"Bearer {env.key}"})
    found: list[dict[str, Any]] = response.json()["data"]
    return list(reversed(found))  # oldest first


# -- embeddings ---------------------------------------------------------------------------


def test_embeddings_come_back_as_floats_and_as_base64_and_are_billed_by_input(env):
    sdk = env.sdk()
    decoded = sdk.embeddings.create(model="text-embedding-3-small", input=["hello world", "bye"])
    floats = sdk.embeddings.create(
        model="text-embedding-3-small", input=["hello world", "bye"], encoding_format="float"
    )
    assert len(decoded.data) == 2 and len(decoded.data[0].embedding) == 8
    for a, b in zip(decoded.data[0].embedding, floats.data[0].embedding, strict=True):
        assert a == pytest.approx(b, rel=1e-6)
    assert decoded.usage.prompt_tokens == 3 and decoded.model == "text-embedding-3-small"
    sent = [r for r in env.fake.requests if r.path == "/v1/embeddings"]
    assert [r.body.get("encoding_format", "float") for r in sent] == ["float", "float"]
    assert all(r.headers["authorization"] == f"Bearer {CREDENTIAL}" for r in sent)
    receipts = _receipts(env)
    assert [(r["endpoint"], r["input_tokens"], r["output_tokens"]) for r in receipts] == [("embeddings", 3, 0)] * 2
    assert receipts[0]["charge_micros"] > 0 and receipts[0]["usage_source"] == "provider_reported"
    env.audit_ok()


def test_embeddings_dimensions_pass_through_and_missing_usage_is_estimated(compatible_env):
    result = compatible_env.sdk().embeddings.create(
        model="text-embedding-3-small", input="hello [fake:no_usage]", dimensions=4, encoding_format="float"
    )
    assert len(result.data[0].embedding) == 4
    assert compatible_env.last_receipt()["usage_source"] == "estimated"
    compatible_env.audit_ok()


# -- upstream errors ----------------------------------------------------------------------

# upstream status -> (gateway status, openai SDK exception)
ERROR_CLASSES: dict[int, tuple[int, type[openai.APIStatusError]]] = {
    400: (400, openai.BadRequestError),
    401: (502, openai.InternalServerError),
    403: (502, openai.InternalServerError),
    404: (502, openai.InternalServerError),
    408: (502, openai.InternalServerError),
    409: (502, openai.InternalServerError),
    413: (413, openai.APIStatusError),
    429: (429, openai.RateLimitError),
    500: (502, openai.InternalServerError),
    502: (502, openai.InternalServerError),
    503: (502, openai.InternalServerError),
    504: (502, openai.InternalServerError),
}


def _expected_type(status: int) -> str:
    return "upstream_error" if status == 502 else ERRORS[status][0]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("status", sorted(ERROR_CLASSES))
def test_each_upstream_error_class_is_attributed_to_the_provider(openai_env, status, stream):
    gateway_status, exception = ERROR_CLASSES[status]
    with pytest.raises(exception) as caught:
        result = openai_env.sdk().chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"x [fake:status={status}]"}], stream=stream
        )
        list(result) if stream else None
    assert type(caught.value) is exception
    assert caught.value.status_code == gateway_status
    error = caught.value.body
    assert isinstance(error, dict)
    assert (error["source"], error["provider"], error["upstream_status"]) == ("upstream", "openai", status)
    assert error["upstream_type"] == _expected_type(status)
    if status == 429:
        assert caught.value.response.headers["retry-after"] == RETRY_AFTER_SECONDS
    receipt = openai_env.receipt(caught.value.response.headers["x-request-id"])
    assert receipt["status"] == "failed" and receipt["charge_micros"] == 0 and receipt["error_source"] == "upstream"
    assert receipt["attempts"][0]["http_status"] == status
    openai_env.audit_ok()


def test_an_upstream_401_is_the_operators_credential_never_the_clients_key(env):
    env.fake.credential = "sk-a-different-key-the-host-expects"
    with pytest.raises(openai.InternalServerError) as caught:
        env.sdk().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert not isinstance(caught.value, openai.AuthenticationError)
    error = caught.value.body
    assert isinstance(error, dict)
    assert (error["source"], error["upstream_status"], error["code"]) == ("upstream", 401, "upstream_401")
    assert "Incorrect API key provided" in error["message"]
    env.audit_ok()


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_an_upstream_that_is_too_slow_is_a_504_timeout(env, stream):
    env.route(options={"timeout_first_byte_ms": 100, "timeout_connect_ms": 100})
    with pytest.raises(openai.InternalServerError) as caught:
        result = env.sdk().chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x [fake:slow_ms=3000]"}], stream=stream
        )
        list(result) if stream else None
    error = caught.value.body
    assert isinstance(error, dict)
    assert caught.value.status_code == 504
    assert (error["source"], error["provider"], error["code"]) == ("upstream", env.provider, "upstream_timeout")
    assert env.last_receipt()["attempts"][0]["error_class"] == "timeout"
    env.audit_ok()


def test_a_refused_connection_is_a_502_network_error(env):
    env.route(base_url=f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(openai.InternalServerError) as caught:
        env.sdk().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    error = caught.value.body
    assert isinstance(error, dict)
    assert caught.value.status_code == 502
    assert (error["source"], error["provider"], error["upstream_type"]) == ("upstream", env.provider, "network_error")
    env.audit_ok()


def test_embedding_errors_are_attributed_too(env):
    with pytest.raises(openai.RateLimitError) as caught:
        env.sdk().embeddings.create(model="text-embedding-3-small", input="x [fake:status=429]")
    error = caught.value.body
    assert isinstance(error, dict) and error["provider"] == env.provider and error["upstream_type"] == "requests"
    env.audit_ok()


# -- broken streams -----------------------------------------------------------------------


def test_a_stream_cut_mid_answer_ends_in_an_error_event_and_bills_only_what_was_sent(env):
    response = env.post(
        "chat/completions",
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "weather [fake:cut=3]"}], "stream": True},
    )
    assert response.status_code == 200
    events = data_events(response)
    assert "[DONE]" not in events
    assert len(events) == 1 + 3 + 1  # the role, three pieces of content, the error
    assert '"source":"upstream"' in events[-1] and '"upstream_type":"stream_cut"' in events[-1]
    receipt = env.last_receipt()
    assert receipt["status"] == "failed" and receipt["usage_source"] == "estimated"
    assert 0 < receipt["output_tokens"] <= 6  # "I'm unable to provide" counted conservatively
    assert 0 < receipt["charge_micros"] < receipt["hold_micros"]
    env.audit_ok()


def test_an_in_stream_error_event_reaches_the_client_in_band(env):
    response = env.post(
        "chat/completions",
        {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "weather [fake:stream_error=2]"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    events = data_events(response)
    assert "[DONE]" not in events
    assert '"upstream_type":"server_error"' in events[-1] and env.provider in events[-1]
    assert env.last_receipt()["status"] == "failed"
    env.audit_ok()


# -- OpenAI-compatible hosts' habits ------------------------------------------------------


def test_a_compatible_host_without_usage_is_estimated(compatible_env):
    chunks = list(
        compatible_env.sdk().chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "weather [fake:no_usage]"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert all(c.usage is None and c.choices for c in chunks)
    receipt = compatible_env.last_receipt()
    assert receipt["status"] == "succeeded" and receipt["usage_source"] == "estimated"
    assert receipt["output_tokens"] > 0 and receipt["charge_micros"] > 0
    compatible_env.audit_ok()


def test_a_compatible_host_with_usage_on_every_chunk_and_no_done(compatible_env):
    chunks = list(
        compatible_env.sdk().chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Tell me the weather [fake:usage_every_chunk] [fake:no_done]"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    with_usage = [c for c in chunks if c.usage is not None]
    assert with_usage == [chunks[-1]] and chunks[-1].choices == []
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == len(text.split())
    receipt = compatible_env.last_receipt()
    assert receipt["status"] == "succeeded" and receipt["usage_source"] == "provider_reported"
    assert receipt["output_tokens"] == len(text.split())
    compatible_env.audit_ok()


def test_a_compatible_host_without_credential_gets_no_authorization(compatible_env):
    compatible_env.fake.credential = None
    compatible_env.route(credential=None, options={"headers": {"X-Title": "glasskey", "Authorization": "Bearer no"}})
    compatible_env.sdk().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    [sent] = compatible_env.fake.requests
    assert "authorization" not in sent.headers and sent.headers["x-title"] == "glasskey"
    compatible_env.audit_ok()


def test_openai_organization_and_project_headers_and_env_credentials(fake, tmp_path):
    with _start("openai", fake, tmp_path, environ={"OPENAI_KEY_FOR_TESTS": CREDENTIAL}) as gateway:
        env = _env(gateway, fake)
        env.route(credential="env:OPENAI_KEY_FOR_TESTS", options={"organization": "org-1", "project": "proj-1"})
        env.sdk().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
        [sent] = env.fake.requests
        assert sent.headers["authorization"] == f"Bearer {CREDENTIAL}"
        assert (sent.headers["openai-organization"], sent.headers["openai-project"]) == ("org-1", "proj-1")
        env.audit_ok()


# -- the canary ---------------------------------------------------------------------------


def test_a_canary_credential_leaks_nowhere_on_any_error_path(fake, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    with _start("openai", fake, tmp_path) as gateway:
        _canary_run(_env(gateway, fake), caplog)


def _canary_run(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    canary = f"sk-canary-{uuid.uuid4().hex}"
    env.fake.credential = canary
    env.route(credential=canary)
    seen: list[str] = []

    def call(content: str, *, stream: bool = False, path: str = "chat/completions") -> None:
        if path == "embeddings":
            body: dict[str, Any] = {"model": "text-embedding-3-small", "input": content}
        else:
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}], "stream": stream}
        response = env.post(path, body)
        seen.append(response.text)
        seen.append(repr(dict(response.headers)))

    for status in ERROR_CLASSES:
        call(f"x [fake:status={status}] [fake:echo_key]")
        call(f"x [fake:status={status}] [fake:echo_key]", stream=True)
    with env.services.db.write() as conn:
        update_route(conn, "rt-embed", credential=canary)
    call("x [fake:status=401] [fake:echo_key]", path="embeddings")
    call("weather [fake:cut=2]", stream=True)
    call("weather [fake:stream_error=1] [fake:echo_key]", stream=True)
    env.fake.credential = "sk-the-host-wants-another-key"
    call("x")  # the host's own 401, which names the key it was given
    call("x", stream=True)
    env.route(options={"timeout_first_byte_ms": 100, "timeout_connect_ms": 100})
    call("x [fake:slow_ms=3000]")
    env.route(base_url=f"http://127.0.0.1:{free_port()}/v1")
    call("x")

    assert any(canary in r.headers.get("authorization", "") for r in env.fake.requests)  # it was really sent
    assert any("you sent Bearer" in text for text in seen)  # and really echoed back
    assert all(canary not in r.url for r in env.fake.requests)
    for text in seen:
        assert canary not in text and canary[10:30] not in text
    dump: list[str] = []
    with env.services.db.read() as conn:
        metadata = MetaData()
        metadata.reflect(conn)
        for row in conn.execute(select(metadata.tables["receipts"])):
            dump.append(repr(tuple(row)))
    assert len(dump) == len(ERROR_CLASSES) * 2 + 7
    assert all(canary[10:30] not in row for row in dump)
    logs = "\n".join(record.getMessage() + repr(record.args) + str(record.exc_info) for record in caplog.records)
    assert canary[10:30] not in logs
    env.audit_ok()
