"""OpenAI stream lines -> Anthropic Messages stream events, one line at a time (pure, no I/O).

The lifecycle relays a stream as OpenAI SSE lines (``data: {chunk}``, an in-band ``data: {"error":
...}`` when the upstream breaks mid-answer, and ``data: [DONE]`` once the charge and receipt are
committed). ``MessageStream.feed`` turns each line into the Anthropic events, in the order the
Messages API sends them:

    message_start, ping,
    (content_block_start, content_block_delta*, content_block_stop)*   thinking / text / tool_use
    message_delta (stop_reason, usage), message_stop

``[DONE]`` is what closes the message: ``message_delta`` and ``message_stop`` leave only then, so an
Anthropic client, like an OpenAI one, sees success only after the charge is committed. An in-band
error becomes an ``error`` event and nothing follows it.
"""

from __future__ import annotations

from typing import Any

import orjson

from glasskey.gateway.anthropic_inbound_reply import anthropic_usage, reasoning_of, stop_reason, stream_error_body

DATA_PREFIX = b"data: "
DONE = b"[DONE]"


def event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class MessageStream:
    """The state of one translated stream: which content block is open and what ends the message."""

    def __init__(self, message_id: str, model: str) -> None:
        self.message_id = message_id
        self.model = model
        self.started = False
        self.finished = False  # message_stop or an error event was sent; nothing may follow
        self.block_index = -1  # the Anthropic content block open now (-1: none yet)
        self.block_kind: str | None = None  # "thinking", "text", "tool_use", or None when closed
        self.tool_blocks: dict[int, int] = {}  # OpenAI tool call index -> Anthropic block index
        self.finish_reason: str | None = None
        self.refused = False  # the text came as OpenAI's ``refusal``
        self.usage: dict[str, Any] | None = None

    def feed(self, data: bytes) -> bytes:
        """The Anthropic events for what the lifecycle's relay emitted (one or more ``data:`` lines)."""
        return b"".join(self._line(line) for line in data.split(b"\n\n"))

    def _line(self, line: bytes) -> bytes:
        if self.finished:
            return b""
        payload = line.strip()
        if payload.startswith(DATA_PREFIX):
            payload = payload[len(DATA_PREFIX) :]
        if not payload:
            return b""
        if payload == DONE:
            return self._start() + self._close_block() + self._finish()
        parsed = orjson.loads(payload)
        if not isinstance(parsed, dict):
            return b""
        if isinstance(parsed.get("error"), dict) and not parsed.get("choices"):
            self.finished = True
            return self._start() + event("error", stream_error_body(parsed["error"]))
        return self._start() + self._chunk(parsed)

    def _start(self) -> bytes:
        if self.started:
            return b""
        self.started = True
        message: dict[str, Any] = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            # OpenAI's shape reports usage only at the end: the counts arrive in message_delta.
            "usage": anthropic_usage(None),
        }
        return event("message_start", {"type": "message_start", "message": message}) + event("ping", {"type": "ping"})

    def _chunk(self, chunk: dict[str, Any]) -> bytes:
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        out = b""
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue  # an Anthropic message has one choice; n > 1 is not asked by to_chat_body
            delta = choice.get("delta") or {}
            reasoning = reasoning_of(delta)
            if reasoning:
                out += self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
                out += self._delta({"type": "thinking_delta", "thinking": reasoning})
            text = delta.get("content") or delta.get("refusal")
            if isinstance(text, str) and text:
                # A refusal streams as text, as Anthropic sends one, and ends with stop_reason refusal.
                self.refused = self.refused or not delta.get("content")
                out += self._open("text", {"type": "text", "text": ""})
                out += self._delta({"type": "text_delta", "text": text})
            for call in delta.get("tool_calls") or ():
                out += self._tool_call(call)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
                out += self._close_block()
        return out

    def _tool_call(self, call: dict[str, Any]) -> bytes:
        position = call.get("index", 0)
        function = call.get("function") or {}
        out = b""
        if position not in self.tool_blocks:
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": call.get("id") or "",
                "name": function.get("name") or "",
                "input": {},
            }
            out += self._open("tool_use", block, force=True)
            self.tool_blocks[position] = self.block_index
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            delta = {"type": "input_json_delta", "partial_json": arguments}
            index = self.tool_blocks[position]
            out += event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
        return out

    def _open(self, kind: str, block: dict[str, Any], *, force: bool = False) -> bytes:
        """Open a block of ``kind`` unless one is open already (a new tool call always opens one)."""
        if self.block_kind == kind and not force:
            return b""
        out = self._close_block()
        self.block_index += 1
        self.block_kind = kind
        start = {"type": "content_block_start", "index": self.block_index, "content_block": block}
        return out + event("content_block_start", start)

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return event("content_block_delta", {"type": "content_block_delta", "index": self.block_index, "delta": delta})

    def _close_block(self) -> bytes:
        if self.block_kind is None:
            return b""
        self.block_kind = None
        return event("content_block_stop", {"type": "content_block_stop", "index": self.block_index})

    def _finish(self) -> bytes:
        self.finished = True
        reason = "refusal" if self.refused else stop_reason(self.finish_reason)
        delta = {"stop_reason": reason, "stop_sequence": None}
        message_delta = {"type": "message_delta", "delta": delta, "usage": anthropic_usage(self.usage)}
        return event("message_delta", message_delta) + event("message_stop", {"type": "message_stop"})
