"""The edge checks of request bodies: storable text, bounded depth, no upstream choice, bounded numbers.

Plain functions, tested without a server; ``tests/hostile`` drives the same rules through every
endpoint on both engines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from glasskey.errors import ClientError
from glasskey.gateway import parameters as p
from glasskey.gateway.requests import (
    BODY_DEPTH_MAX,
    UPSTREAM_FIELDS,
    check_chat_body,
    check_embeddings_body,
    parse_json_object,
)
from glasskey.pricing.catalog import Model, Prices
from glasskey.pricing.quote import check_output_cap

MESSAGES = [{"role": "user", "content": "hi"}]


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": MESSAGES, **fields}


def refusal(body: dict[str, Any] | bytes, endpoint: str = "chat") -> ClientError:
    # The standard library writes integers of any size, as a hostile client may.
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(ClientError) as caught:
        parsed = parse_json_object(raw)
        (check_embeddings_body if endpoint == "embeddings" else check_chat_body)(parsed)
    assert caught.value.source == "client" and caught.value.status_code == 400
    return caught.value


def accepted(body: dict[str, Any], endpoint: str = "chat") -> None:
    parsed = parse_json_object(orjson.dumps(body))
    (check_embeddings_body if endpoint == "embeddings" else check_chat_body)(parsed)


# -- text that cannot be stored ------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (chat(model="z\x00"), "model"),
        (chat(user="u\x00"), "user"),
        (chat(metadata={"k": "v\x00"}), "metadata.k"),
        (chat(metadata={"k\x00": "v"}), "metadata"),
        (
            chat(messages=[{"role": "user", "content": [{"type": "text", "text": "a\x00"}]}]),
            "messages.0.content.0.text",
        ),
        (chat(extra={"deep": [[["\x00"]]]}), "extra.deep.0.0.0"),
    ],
    ids=["model", "user", "metadata_value", "metadata_key", "nested_content", "deep_list"],
)
def test_a_nul_anywhere_in_the_body_is_refused_and_named(body: dict[str, Any], param: str) -> None:
    error = refusal(body)
    assert error.param == param
    assert "NUL" in error.message and "\x00" not in error.message


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\xff\xfe"}]}',
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\\ud800"}]}',
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\xed\xa0\x80"}]}',
        b'{"model": NaN}',
        b"[" * 10_000 + b"]" * 10_000,
    ],
    ids=["invalid_utf8", "lone_surrogate_escape", "encoded_surrogate", "nan", "depth_10000"],
)
def test_invalid_utf8_surrogates_and_absurd_depth_are_not_json(raw: bytes) -> None:
    assert refusal(raw).code == "invalid_json"


def test_nesting_is_capped_at_64_levels() -> None:
    def nested(levels: int) -> Any:
        value: Any = "x"
        for _ in range(levels):
            value = [value]
        return value

    accepted(chat(extra=nested(BODY_DEPTH_MAX - 2)))  # the body itself and `extra` are two levels
    assert "nested deeper than 64" in refusal(chat(extra=nested(BODY_DEPTH_MAX))).message


def test_a_long_model_name_is_refused_and_echoed_truncated() -> None:
    error = refusal(chat(model="m" * 100_000))
    assert error.param == "model"
    assert len(error.message) < 200 and "100000 characters" in error.message
    accepted(chat(model="m" * p.MODEL_NAME_MAX_CHARS))


def test_a_model_name_with_control_characters_is_refused() -> None:
    assert refusal(chat(model="gpt\n4o")).param == "model"


# -- client-chosen upstream fields ---------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        chat(api_base="http://evil"),
        chat(API_BASE="http://evil"),
        chat(**{"Base-Url": "http://evil"}),
        chat(baseURL="http://evil"),
        chat(extra_body={"api_base": "http://evil"}),
        chat(metadata={"base_url": "http://evil"}),
        chat(messages=[{"role": "user", "content": "hi", "api_key": "sk-x"}]),
        chat(custom_llm_provider="openai"),
        chat(organization="org-x"),
        chat(extra_headers={"authorization": "Bearer x"}),
        chat(tools=[{"type": "function", "function": {"name": "f", "parameters": {}}, "api_base": "x"}]),
    ],
    ids=[
        "top",
        "upper",
        "dashed",
        "camel",
        "extra_body",
        "metadata",
        "in_message",
        "provider",
        "organization",
        "extra_headers",
        "beside_a_schema",
    ],
)
def test_upstream_fields_are_refused_at_any_depth_whatever_their_case(body: dict[str, Any]) -> None:
    error = refusal(body)
    assert "only the gateway's operator" in error.message
    assert error.param is not None


def test_every_listed_upstream_field_is_refused() -> None:
    for name in UPSTREAM_FIELDS:
        assert refusal(chat(extra_body={name.upper(): "x"})).param == f"extra_body.{name.upper()}"


def test_schemas_the_client_writes_for_the_model_may_name_such_fields() -> None:
    schema = {"type": "object", "properties": {"api_key": {"type": "string"}, "base_url": {"type": "string"}}}
    accepted(chat(tools=[{"type": "function", "function": {"name": "connect", "parameters": schema}}]))
    accepted(chat(functions=[{"name": "connect", "parameters": schema}]))
    accepted(chat(response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}))
    # ... but the exemption is that subtree only, and NUL is refused there as everywhere.
    assert refusal(chat(response_format={"type": "json_schema", "json_schema": {"name": "s", "api_base": "x"}}))
    bad_schema = {"type": "object", "description": "\x00"}
    assert (
        "NUL"
        in refusal(chat(tools=[{"type": "function", "function": {"name": "f", "parameters": bad_schema}}])).message
    )


def test_a_duplicated_key_is_checked_as_the_value_that_is_forwarded() -> None:
    # orjson keeps the last value, and that parsed value is what goes upstream: no parser gap.
    raw = b'{"model": "gpt-4o-mini", "model": "z\\u0000", "messages": [{"role": "user", "content": "hi"}]}'
    assert refusal(raw).param == "model"
    smuggled = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "x": 1, "API_BASE": "e"}'
    assert refusal(smuggled).param == "API_BASE"


# -- numeric and typed parameters ----------------------------------------------------------


def _bad_values(bound: p.Bound) -> list[Any]:
    if bound.kind == "bool":
        return ["true", 1, 0.0]
    wrong_type: list[Any] = ["1", True, [1], {"v": 1}]
    if bound.kind == "int":
        wrong_type.append(1.5)
    assert bound.minimum is not None and bound.maximum is not None
    return [*wrong_type, bound.minimum - 1, bound.maximum + 1]


@pytest.mark.parametrize("name", sorted(p.CHAT_BOUNDS))
def test_every_chat_parameter_refuses_wrong_types_and_values_out_of_range(name: str) -> None:
    bound = p.CHAT_BOUNDS[name]
    for value in _bad_values(bound):
        error = refusal(chat(**{name: value}))
        assert error.param == name, (name, value)
    for value in (bound.minimum, bound.maximum) if bound.kind != "bool" else (True, False):
        accepted(chat(**{name: value}))
    accepted(chat(**{name: None}))  # null is absent, as in OpenAI's API


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 9}, "n"),
        ({"max_tokens": 10**7}, "max_tokens"),
        ({"temperature": 1e308}, "temperature"),
        ({"seed": 2**63}, "seed"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": 5}, "stop"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"metadata": {"k": "v" * 513}}, "metadata"),
        ({"metadata": {"k": 5}}, "metadata"),
        ({"logit_bias": {"50256": 101}}, "logit_bias"),
        ({"tools": [{"type": "function"}] * 129}, "tools"),
        ({"tools": "all"}, "tools"),
        ({"user": "u" * 257}, "user"),
        ({"stream_options": {"include_usage": "yes"}}, "stream_options"),
    ],
)
def test_other_chat_fields_have_documented_bounds(fields: dict[str, Any], param: str) -> None:
    assert refusal(chat(**fields)).param == param


def embeddings(**fields: Any) -> dict[str, Any]:
    return {"model": "text-embedding-3-small", "input": "hello", **fields}


@pytest.mark.parametrize(
    "fields",
    [
        {"dimensions": 1_000_000_000},
        {"dimensions": 0},
        {"dimensions": "256"},
        {"dimensions": 256.5},
        {"input": ""},
        {"input": []},
        {"input": ["a"] * (p.EMBEDDING_INPUTS_MAX + 1)},
        {"input": [-1, 2]},
        {"input": [[1, 2], []]},
        {"input": [[2**40]]},
        {"input": ["a", 5]},
        {"input": {"text": "a"}},
        {"encoding_format": "int8"},
    ],
)
def test_embeddings_inputs_and_dimensions_are_bounded(fields: dict[str, Any]) -> None:
    assert refusal(embeddings(**fields), "embeddings").param in ("dimensions", "input", "encoding_format")


def test_embeddings_within_bounds_are_accepted() -> None:
    accepted(embeddings(dimensions=p.EMBEDDING_DIMENSIONS_MAX), "embeddings")
    accepted(embeddings(input=["a"] * p.EMBEDDING_INPUTS_MAX), "embeddings")
    accepted(embeddings(input=[[1, 2], [3]]), "embeddings")
    accepted(embeddings(input=[1, 2, 3]), "embeddings")


def test_max_tokens_above_the_models_own_maximum_is_refused() -> None:
    prices = Prices(1, 1, 1)
    model = Model("m", "openai", "chat", prices, 16_384, 128_000, "2026-01-01", "list", False)
    check_output_cap({"max_tokens": 16_384}, model)
    with pytest.raises(ClientError) as caught:
        check_output_cap({"max_completion_tokens": 16_385}, model)
    assert caught.value.param == "max_completion_tokens" and "16,384" in caught.value.message


def test_the_documented_bounds_table_names_every_bounded_parameter_and_upstream_field() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "errors.md").read_text()
    section = doc.split("## Request parameter bounds", 1)[1]
    for name in [*p.CHAT_BOUNDS, *p.EMBEDDINGS_BOUNDS, *UPSTREAM_FIELDS, "metadata", "stop", "logit_bias", "tools"]:
        assert f"`{name}`" in section, name
    for number in ("64 levels", "1 to 200 characters", "1 to 8", "0 to 20", "1 to 8,192", "2,048", "10^12"):
        assert number in section, number
    assert p.CHOICES_MAX == 8 and p.EMBEDDING_DIMENSIONS_MAX == 8192 and p.EMBEDDING_INPUTS_MAX == 2048
    assert p.MODEL_NAME_MAX_CHARS == 200 and BODY_DEPTH_MAX == 64


def test_schemas_in_the_anthropic_and_gemini_native_shapes_are_exempt_too() -> None:
    schema = {"type": "object", "properties": {"api_key": {"type": "string"}}}
    anthropic = {"model": "m", "max_tokens": 5, "tools": [{"name": "f", "input_schema": schema}]}
    parse_json_object(orjson.dumps(anthropic))
    gemini = {
        "contents": [],
        "tools": [{"functionDeclarations": [{"name": "f", "parameters": schema, "response": schema}]}],
        "generationConfig": {"responseSchema": schema, "response_json_schema": schema},
    }
    parse_json_object(orjson.dumps(gemini))
    with pytest.raises(ClientError):
        parse_json_object(orjson.dumps({**gemini, "generationConfig": {"api_base": "x"}}))


def test_of_several_refused_parameters_the_first_in_the_table_is_named() -> None:
    # The body names temperature first; the table names max_tokens first, and that one is reported.
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 9, "max_tokens": 0}
    with pytest.raises(ClientError) as caught:
        check_chat_body(body)
    assert caught.value.param == "max_tokens"


def test_whole_numbers_of_any_int_type_within_bounds_are_accepted() -> None:
    class Count(int):
        pass

    p.check_bounds({"max_tokens": Count(5), "temperature": Count(1), "top_p": 0.5}, p.CHAT_BOUNDS)
