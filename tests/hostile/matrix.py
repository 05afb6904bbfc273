"""The bad-input matrix, generated: every endpoint with a body, every field, every class of bad value.

Each endpoint's fields get representative bad values of every class: wrong types, numbers out of
bounds (from the bounds table itself, so a new bound is tested the day it is added), NUL, deep
nesting and huge sizes; each body also gets the body-level classes, as raw bytes no well-behaved
encoder would write (not JSON, not an object, invalid UTF-8, surrogates, 10,000 levels deep,
duplicate keys, over the size limit). ``test_bad_input_matrix`` sends it all; ``test_poison``
sends it beside legitimate traffic.
"""

from __future__ import annotations

import json
from typing import Any

from glasskey.gateway import parameters as p
from hostile.conftest import Call, call

SOURCES = {"client", "key", "model", "wallet", "budget", "route", "upstream", "gateway"}
HUGE = "h" * 100_000
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
EMBEDDINGS = {"model": "text-embedding-3-small", "input": "hi"}
BODY_ENDPOINTS: dict[str, tuple[str, dict[str, Any]]] = {
    "chat": ("chat/completions", CHAT),
    "stream": ("chat/completions", {**CHAT, "stream": True}),
    "embeddings": ("embeddings", EMBEDDINGS),
    "quote": ("quote", CHAT),
}
# Endpoints whose refusals leave a receipt (quotes move no money and leave none).
RECEIPTED = {"chat", "stream", "embeddings"}


def nested(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = [value]
    return value


def numeric_cases(bound: p.Bound) -> list[Any]:
    """Wrong types and out-of-range numbers for one entry of the bounds table."""
    if bound.kind == "bool":
        return ["true", 1, [], {"v": True}]
    assert bound.minimum is not None and bound.maximum is not None
    cases: list[Any] = ["1", True, [1], {"v": 1}, bound.minimum - 1, bound.maximum + 1, 2**64, -(2**63) - 1, 1e308]
    if bound.kind == "int":
        cases.append(1.5)
    return cases


TEXT_CASES: list[Any] = [5, ["x"], {"v": "x"}, "\x00", "a\x00b", HUGE]
CHAT_FIELDS: dict[str, list[Any]] = {
    "model": [None, 5, "", "z\x00", HUGE, ["gpt-4o-mini"], "gpt-4o-mini\n", {"name": "gpt-4o-mini"}],
    "messages": [None, "hi", [], [5], [{"content": "x"}], [{"role": 5}], [{"role": "user", "content": "\x00"}]],
    "stream_options": ["x", 5, {"include_usage": "yes"}],
    "stop": [5, [1], ["a"] * 5, "\x00"],
    "user": TEXT_CASES,
    "metadata": ["x", {"k": 5}, {"k": "\x00"}, {f"k{i}": "v" for i in range(17)}, {"k": HUGE}, {"base_url": "x"}],
    "logit_bias": ["x", {"1": 1000}, {"1": "x"}],
    "tools": ["x", 5, [{"type": "function"}] * 129],
    "extra": [nested(100), {"API_BASE": "http://169.254.169.254"}],
    **{name: numeric_cases(bound) for name, bound in p.CHAT_BOUNDS.items() if name != "stream"},
}
EMBEDDINGS_FIELDS: dict[str, list[Any]] = {
    "model": CHAT_FIELDS["model"],
    "input": [None, "", [], 5, [5.5], [-1], ["a", 5], [[]], ["a"] * 2049, {"a": 1}, "\x00", ["\x00"], [[2**40]]],
    "encoding_format": [5, "int8"],
    "user": TEXT_CASES,
    "extra": CHAT_FIELDS["extra"],
    **{name: numeric_cases(bound) for name, bound in p.EMBEDDINGS_BOUNDS.items()},
}


def raw_cases(valid: dict[str, Any]) -> dict[str, bytes]:
    """Body-level cases, as bytes: what no JSON encoder of a well-behaved client would write."""
    good = json.dumps(valid).encode()
    return {
        "not_json": b"{",
        "empty": b"",
        "array": b"[1, 2]",
        "string": b'"hello"',
        "null": b"null",
        "nan": good[:-1] + b', "x": NaN}',
        "invalid_utf8": good.replace(b'"hi"', b'"h\xff\xfei"'),
        "encoded_surrogate": good.replace(b'"hi"', b'"\xed\xa0\x80"'),
        "lone_surrogate_escape": good.replace(b'"hi"', b'"\\ud800"'),
        "nul_escape_in_key": good[:-1] + b', "k\\u0000": 1}',
        "depth_10000": good[:-1] + b', "x": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
        "duplicate_model_nul_last": good[:-1] + b', "model": "z\\u0000"}',
        "duplicate_upstream_field": good[:-1] + b', "base_url": "a", "base_url": "http://evil"}',
        "too_large": good[:-1] + b', "x": "' + b"x" * (4 * 1024 * 1024 + 1) + b'"}',
    }


def body_matrix(key: str) -> list[Call]:
    calls: list[Call] = []
    for endpoint, (path, valid) in BODY_ENDPOINTS.items():
        fields = EMBEDDINGS_FIELDS if endpoint == "embeddings" else CHAT_FIELDS
        for name, values in fields.items():
            for index, value in enumerate(values):
                label = f"{endpoint}:{name}[{index}]"
                calls.append(call("POST", path, {**valid, name: value}, key=key, label=label))
        for name, raw in raw_cases(valid).items():
            calls.append(call("POST", path, raw, key=key, label=f"{endpoint}:{name}"))
    return calls
