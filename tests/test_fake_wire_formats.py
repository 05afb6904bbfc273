"""The fake upstreams speak the real wire formats: their answers checked against real recordings.

Anthropic: ``tests/fixtures/anthropic`` holds responses recorded from api.anthropic.com (see its
README and LICENSE). The fake's message body has the recorded field names, at the top and in its
usage, and every stream event it sends uses only field names the recorded streams use for that
event and block type (thinking and server tool blocks, which no recording holds, are checked by
the SDK tests that parse them).

Gemini: no recorded Gemini responses exist in this project (``tests/fixtures/gemini/README.md``),
so the fake's answers are checked against the ``google-genai`` SDK's own response type, which
forbids any field it does not know.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from google.genai import types
from starlette.testclient import TestClient

from fake_anthropic import Answer, message_body, stream_events
from fake_gemini import FAKE_API_KEY, FakeGemini

ANTHROPIC = Path(__file__).parent / "fixtures" / "anthropic"
RECORDED_MESSAGES = sorted(ANTHROPIC.glob("message_*.json"))
RECORDED_STREAMS = sorted(ANTHROPIC.glob("*.sse"))
TEXT = Answer("claude-sonnet-4-5", [{"type": "text", "text": "Hello there"}], "end_turn", None, {})
TOOL_CALL = Answer(
    "claude-sonnet-4-5",
    [{"type": "text", "text": "Let me look."}, {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}],
    "tool_use",
    None,
    {},
)
USAGE = {"input_tokens": 10, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 3}


def _shape(name: str, data: dict[str, Any]) -> list[tuple[str, frozenset[str]]]:
    """An event's field names, and those of its nested message, block, delta and usage, each by kind."""
    kind = f"{name}"
    shapes = [(kind, frozenset(data))]
    for part in ("message", "content_block", "delta", "usage"):
        inner = data.get(part)
        if isinstance(inner, dict):
            shapes.append((f"{kind}.{part}:{inner.get('type', '')}", frozenset(inner)))
            if isinstance(inner.get("usage"), dict):
                shapes.append((f"{kind}.{part}.usage", frozenset(inner["usage"])))
    return shapes


def _recorded_shapes() -> dict[str, set[str]]:
    seen: dict[str, set[str]] = defaultdict(set)
    for path in RECORDED_STREAMS:
        for block in path.read_text().split("\n\n"):
            lines = dict(line.split(": ", 1) for line in block.strip().splitlines() if ": " in line)
            if "event" in lines and "data" in lines:
                for kind, names in _shape(lines["event"], json.loads(lines["data"])):
                    seen[kind] |= names
    return seen


@pytest.mark.parametrize("recorded", RECORDED_MESSAGES, ids=lambda path: path.name)
def test_the_fake_anthropic_message_has_the_recorded_field_names(recorded: Path) -> None:
    real = json.loads(recorded.read_text())
    fake = message_body(Answer(**{**TEXT.__dict__, "usage": USAGE}), "msg_fake1")
    assert set(fake) == set(real)
    assert set(fake["usage"]) == set(real["usage"])
    assert set(fake["content"][0]) <= set(real["content"][0])


@pytest.mark.parametrize("answer", [TEXT, TOOL_CALL], ids=["text", "tool_use"])
def test_the_fake_anthropic_stream_uses_only_recorded_field_names(answer: Answer) -> None:
    recorded = _recorded_shapes()
    sent = stream_events(Answer(**{**answer.__dict__, "usage": USAGE}), "msg_fake1")
    names = [name for name, _ in sent]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"] and "ping" in names
    for name, data in sent:
        for kind, fields in _shape(name, data):
            assert kind in recorded, f"no recording has a {kind}"
            assert fields <= recorded[kind], f"{kind}: {sorted(fields - recorded[kind])} never recorded"


@pytest.mark.parametrize("method", ["generateContent", "streamGenerateContent?alt=sse"])
def test_the_fake_gemini_answers_parse_as_the_sdk_response_type_with_nothing_unknown(method: str) -> None:
    client = TestClient(FakeGemini().app)
    body = {"contents": [{"role": "user", "parts": [{"text": "Hello"}]}]}
    response = client.post(
        f"/v1beta/models/gemini-2.5-flash:{method}", json=body, headers={"x-goog-api-key": FAKE_API_KEY}
    )
    assert response.status_code == 200
    if method == "generateContent":
        payloads = [response.json()]
    else:
        payloads = [
            json.loads(line[len("data: ") :]) for line in response.text.split("\r\n") if line.startswith("data: ")
        ]
    assert payloads
    for payload in payloads:
        parsed = types.GenerateContentResponse.model_validate(payload)  # extra="forbid": a misnamed field fails
        assert parsed.candidates and parsed.usage_metadata is not None
