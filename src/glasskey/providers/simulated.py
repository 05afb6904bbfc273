"""A built-in upstream that answers like OpenAI without any network, for the demo and the tests.

This module owns the ``SimulatedProvider``, the deterministic text it "generates" and the
``count_tokens`` approximation that gives its answers realistic, self-consistent token counts.
Routes steer it through ``RouteTarget.options``:

* ``latency_ms`` (int, default 0): wait before the first byte.
* ``chunk_delay_ms`` (int, default 0): wait before every stream chunk after the first.
* ``output_tokens == "max"``: answer exactly the requested max tokens, when the request sets one
  (so a charge equals its hold).
* ``error_rate`` (float 0..1): share of requests that fail with a 500.
* ``fail_status`` (int): always fail with that status; a 429 carries ``retry_after`` (default "1").
* ``timeout`` (bool): wait ``timeout_ms`` (default 30000) and then fail as a 504 timeout.
* ``cut_stream_after_chunks`` (int): streams break after that many content chunks.

It refuses what OpenAI refuses and calls tools as ``simulated_requests`` says, so the demo
shows a whole tool round trip and no request passes here that a real upstream would refuse.

All waiting goes through the injected ``sleep`` so tests run instantly, and all chance (error
draws, completion ids) comes from a ``random.Random`` owned by the instance, so a seeded provider
replays the same run. The text itself depends only on the request: same model and messages,
same answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from glasskey.providers.base import ChatResult, EmbeddingResult, ProviderError, RouteTarget, StreamCut, Usage
from glasskey.providers.simulated_requests import check_chat_body, tool_calls_for
from glasskey.providers.simulated_research import research_answer
from glasskey.providers.sse import PAUSE, Pause

PROVIDER_NAME = "simulated"
Chunk = dict[str, Any]

# Every word is at most four ASCII letters, so each costs exactly one token under ``count_tokens``
# (capitalised or not); that is what lets generation hit a token budget exactly.
_WORDS: tuple[str, ...] = (
    "a", "able", "also", "and", "any", "area", "as", "at", "away", "back", "base", "be", "best",
    "both", "but", "by", "call", "can", "case", "code", "come", "core", "data", "day", "deep",
    "does", "done", "down", "each", "easy", "even", "ever", "fact", "far", "fast", "few", "find",
    "fine", "form", "free", "from", "full", "give", "goal", "good", "has", "have", "help", "here",
    "high", "hold", "idea", "in", "into", "is", "it", "just", "keep", "key", "kind", "know",
    "last", "lead", "less", "like", "line", "list", "long", "look", "made", "main", "make",
    "many", "more", "most", "move", "much", "must", "near", "need", "new", "next", "not", "now",
    "of", "off", "old", "on", "once", "one", "only", "open", "or", "our", "out", "over", "part",
    "path", "plan", "real", "rest", "road", "rule", "run", "safe", "same", "see", "set", "show",
    "side", "size", "so", "some", "soon", "step", "such", "sure", "take", "task", "team", "tell",
    "than", "that", "the", "them", "then", "they", "this", "time", "to", "tool", "true", "turn",
    "use", "very", "view", "way", "we", "well", "what", "when", "will", "with", "word", "work",
    "year", "yet", "you", "your",
)  # fmt: skip

# Its own limits, like any upstream's: the gateway's edge checks tighter bounds first, and these
# keep a direct caller (a test, the demo) from asking it for unbounded work.
DIMENSIONS_MAX = 8192
EMBEDDING_NUMBERS_MAX = 2**20  # inputs x dimensions in one answer
GENERATED_TOKENS_MAX = 131_072  # per choice
CHOICES_MAX = 128

_MIN_NATURAL_TOKENS = 20
_MAX_NATURAL_TOKENS = 120
_WORDS_PER_CHUNK = 3
# OpenAI's chat format costs a few tokens per message and a few to prime the reply.
_TOKENS_PER_MESSAGE = 4
_TOKENS_REPLY_PRIMING = 3
# A low-detail image costs a flat 85 tokens at OpenAI, whatever its size.
_TOKENS_PER_IMAGE = 85

_TOKEN_RE = re.compile(r"[A-Za-z0-9]+|[^\sA-Za-z0-9]")
# Keeps the whitespace with the word after it, and a trailing run of whitespace on its own, so
# that the pieces always join back to the exact text.
_STREAM_PIECE_RE = re.compile(r"\s*\S+|\s+$")

_ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout",
    409: "conflict_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def count_tokens(text: str) -> int:
    """Approximate a BPE tokenizer, deterministically and without a vocabulary.

    A run of ASCII letters and digits costs one token per four characters (at least one); every
    punctuation mark and every non-ASCII character costs one; whitespace is free.
    """
    total = 0
    for match in _TOKEN_RE.findall(text):
        if match.isascii() and match.isalnum():
            total += max(1, (len(match) + 3) // 4)
        else:
            total += 1
    return total


def count_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """Prompt tokens the way OpenAI bills them: text and images plus the chat-format overhead.

    Fields other than ``content`` (names, tool calls) are not counted.
    """
    total = _TOKENS_REPLY_PRIMING
    for message in messages:
        total += _TOKENS_PER_MESSAGE
        content = message.get("content")
        if isinstance(content, str):
            total += count_tokens(content)
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, dict):
                    continue
                if part.get("type") == "image_url":
                    total += _TOKENS_PER_IMAGE
                elif isinstance(part.get("text"), str):
                    total += count_tokens(part["text"])
    return total


@dataclass(frozen=True)
class _Choice:
    content: str
    finish_reason: str
    completion_tokens: int
    tool_calls: tuple[dict[str, Any], ...] = ()

    def message(self) -> dict[str, Any]:
        if self.tool_calls:
            return {"role": "assistant", "content": None, "refusal": None, "tool_calls": list(self.tool_calls)}
        return {"role": "assistant", "content": self.content, "refusal": None}


@dataclass(frozen=True)
class _Answer:
    choices: tuple[_Choice, ...]
    prompt_tokens: int

    @property
    def completion_tokens(self) -> int:
        return sum(choice.completion_tokens for choice in self.choices)

    def usage_body(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }

    def usage(self) -> Usage:
        return Usage(self.prompt_tokens, self.completion_tokens, 0)


def _request_digest(model: str, messages: list[dict[str, Any]]) -> bytes:
    canonical = json.dumps(
        {"model": model, "messages": messages},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(canonical.encode("utf-8")).digest()


def _generate_text(rng: random.Random, budget: int, end_sentence: bool) -> str:
    """Plausible-looking prose of exactly ``budget`` tokens (one per word or punctuation mark)."""
    out: list[str] = []
    words_in_sentence = 0
    sentence_length = rng.randint(6, 14)
    previous_was_word = False
    for position in range(budget):
        left = budget - position
        # A natural answer ends on a full stop; a capped one stops wherever the budget runs out.
        if left == 1 and end_sentence and previous_was_word:
            out.append(".")
            break
        # Punctuation must leave room for a word before the closing full stop, or the answer
        # would end in ",." or ". .".
        room_for_punct = previous_was_word and (not end_sentence or left > 2)
        if room_for_punct and words_in_sentence >= sentence_length:
            out.append(".")
            words_in_sentence = 0
            sentence_length = rng.randint(6, 14)
            previous_was_word = False
            continue
        if room_for_punct and words_in_sentence >= 3 and rng.random() < 0.08:
            out.append(",")
            previous_was_word = False
            continue
        word = rng.choice(_WORDS)
        if words_in_sentence == 0:
            word = word.capitalize()
        out.append(f" {word}" if out else word)
        words_in_sentence += 1
        previous_was_word = True
    return "".join(out)


def _stop_sequences(stop: Any) -> list[str]:
    if isinstance(stop, str):
        return [stop] if stop else []
    if isinstance(stop, list):
        return [s for s in stop if isinstance(s, str) and s]
    return []


def _max_tokens(body: dict[str, Any]) -> int | None:
    # ``max_completion_tokens`` supersedes the deprecated ``max_tokens`` when both are sent.
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is not None:
            return max(0, min(int(value), GENERATED_TOKENS_MAX))
    return None


def _answer(target: RouteTarget, body: dict[str, Any]) -> _Answer:
    messages: list[dict[str, Any]] = list(body.get("messages") or [])
    digest = _request_digest(target.upstream_model, messages)
    cap = _max_tokens(body)
    fill_to_max = target.options.get("output_tokens") == "max"
    stops = _stop_sequences(body.get("stop"))
    n = max(1, min(int(body.get("n") or 1), CHOICES_MAX))
    # The research assistant's steps get answers of the shape they ask for (simulated_research).
    research = research_answer(messages, cap, count_tokens)
    if research is not None:
        return _Answer((_Choice(research, "stop", count_tokens(research)),), count_prompt_tokens(messages))

    choices: list[_Choice] = []
    for index in range(n):
        calls = tool_calls_for(body, index)
        if calls is not None:
            spoken = sum(count_tokens(c["function"]["name"] + c["function"]["arguments"]) for c in calls)
            choices.append(_Choice("", "tool_calls", spoken, tuple(calls)))
            continue
        # Each choice gets its own stream of randomness, so n > 1 gives different answers.
        seed = hashlib.sha256(digest + index.to_bytes(4, "big")).digest()
        rng = random.Random(int.from_bytes(seed[:8], "big"))
        natural = rng.randint(_MIN_NATURAL_TOKENS, _MAX_NATURAL_TOKENS)
        if cap is not None and (fill_to_max or cap < natural):
            budget, capped = cap, True
        else:
            budget, capped = natural, False
        text = _generate_text(rng, budget, end_sentence=not capped)
        finish_reason = "length" if capped else "stop"
        cut_at = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
        if cut_at >= 0:
            text, finish_reason = text[:cut_at], "stop"
        choices.append(_Choice(text, finish_reason, count_tokens(text)))
    return _Answer(tuple(choices), count_prompt_tokens(messages))


def _stream_pieces(text: str) -> list[str]:
    pieces = _STREAM_PIECE_RE.findall(text)
    return ["".join(pieces[i : i + _WORDS_PER_CHUNK]) for i in range(0, len(pieces), _WORDS_PER_CHUNK)]


class SimulatedProvider:
    """An upstream that answers OpenAI chat requests from a deterministic text generator.

    ``chat`` returns OpenAI's exact ``chat.completion`` body. ``stream_chat`` yields OpenAI
    ``chat.completion.chunk`` dicts and ALWAYS ends (unless it fails or is cut) with a chunk whose
    ``choices`` is empty and whose ``usage`` is set, whatever ``stream_options.include_usage``
    says: the gateway needs the usage to bill, and decides itself whether to forward that chunk.
    When ``include_usage`` is true, every earlier chunk also carries ``"usage": None`` as OpenAI
    does; otherwise only the final one has the key. Its totals equal ``chat``'s for the same body.
    """

    name: str = PROVIDER_NAME

    def __init__(
        self,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng_seed: int | None = None,
    ) -> None:
        self._sleep = sleep
        self._rng = random.Random(rng_seed)

    async def embed(self, target: RouteTarget, body: dict[str, Any]) -> EmbeddingResult:
        """Deterministic unit-length vectors derived from each input; usage counts its tokens."""
        await self._before_first_byte(target)
        raw = body.get("input")
        items = raw if isinstance(raw, list) and raw and not isinstance(raw[0], int) else [raw]
        dimensions = int(body.get("dimensions") or target.options.get("dimensions", 256))
        if not 1 <= dimensions <= DIMENSIONS_MAX or dimensions * len(items) > EMBEDDING_NUMBERS_MAX:
            raise ProviderError(
                PROVIDER_NAME,
                400,
                f"the simulated provider answers 1 to {DIMENSIONS_MAX} dimensions and at most"
                f" {EMBEDDING_NUMBERS_MAX:,} numbers per request",
                error_type="invalid_request_error",
            )
        data = []
        tokens = 0
        for index, item in enumerate(items):
            text = item if isinstance(item, str) else json.dumps(item)
            tokens += len(item) if isinstance(item, list) else count_tokens(text)
            rng = random.Random(hashlib.sha256(f"{target.upstream_model}\0{text}".encode()).digest())
            vector = [rng.uniform(-1.0, 1.0) for _ in range(dimensions)]
            norm = sum(v * v for v in vector) ** 0.5 or 1.0
            data.append({"object": "embedding", "index": index, "embedding": [v / norm for v in vector]})
        usage = Usage(input_tokens=tokens, output_tokens=0)
        response = {
            "object": "list",
            "data": data,
            "model": target.upstream_model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return EmbeddingResult(body=response, usage=usage)

    async def chat(self, target: RouteTarget, body: dict[str, Any]) -> ChatResult:
        check_chat_body(body)
        await self._before_first_byte(target)
        answer = _answer(target, body)
        response = {
            "id": self._completion_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": target.upstream_model,
            "choices": [
                {
                    "index": index,
                    "message": choice.message(),
                    "logprobs": None,
                    "finish_reason": choice.finish_reason,
                }
                for index, choice in enumerate(answer.choices)
            ],
            "usage": answer.usage_body(),
            "system_fingerprint": _fingerprint(target.upstream_model),
        }
        return ChatResult(body=response, usage=answer.usage())

    async def stream_chat(
        self, target: RouteTarget, body: dict[str, Any], *, pauses: bool = False
    ) -> AsyncIterator[Chunk | Pause]:
        """Yield the answer as chunks; failures other than the cut surface before the first chunk.

        With the route's ``chunk_delay_ms`` the chunks are paced, each pause announced with
        ``PAUSE`` first when ``pauses`` is asked for (so a relay sends what it holds)."""
        check_chat_body(body)
        await self._before_first_byte(target)
        chunk_delay = _seconds(target.options.get("chunk_delay_ms", 0))
        first = True
        for chunk in _stream_chunks(target, body, self._completion_id()):
            if not first and chunk_delay > 0:
                if pauses:
                    yield PAUSE
                await self._sleep(chunk_delay)
            first = False
            yield chunk

    async def _before_first_byte(self, target: RouteTarget) -> None:
        """Apply the route's failure modes and latency; raises ``ProviderError`` on failure."""
        options = target.options
        if options.get("timeout"):
            await self._sleep(_seconds(options.get("timeout_ms", 30000)))
            raise ProviderError(PROVIDER_NAME, 504, "simulated upstream timeout", error_type="timeout", timeout=True)
        latency = _seconds(options.get("latency_ms", 0))
        if latency > 0:
            await self._sleep(latency)
        fail_status = options.get("fail_status")
        if fail_status is not None:
            status = int(fail_status)
            error_type = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "upstream_error")
            retry_after = str(options.get("retry_after", "1")) if status == 429 else None
            raise ProviderError(
                PROVIDER_NAME,
                status,
                f"simulated upstream error (HTTP {status})",
                error_type=error_type,
                retry_after=retry_after,
            )
        error_rate = float(options.get("error_rate", 0.0))
        # Draw only when the route asks for errors, so an error-free route leaves the seeded
        # sequence (and hence the completion ids) untouched.
        if error_rate > 0 and self._rng.random() < error_rate:
            raise ProviderError(PROVIDER_NAME, 500, "simulated upstream error", error_type="server_error")

    def _completion_id(self) -> str:
        return f"chatcmpl-sim-{self._rng.getrandbits(96):024x}"


def _stream_chunks(target: RouteTarget, body: dict[str, Any], completion_id: str) -> Iterator[Chunk]:
    """The chunks of the answer as OpenAI streams them; a route's ``cut_stream_after_chunks`` cuts it."""
    answer = _answer(target, body)
    cut_option = target.options.get("cut_stream_after_chunks")
    cut_after = None if cut_option is None else int(cut_option)
    stream_options = body.get("stream_options") or {}
    include_usage = bool(stream_options.get("include_usage"))
    envelope: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": target.upstream_model,
        "system_fingerprint": _fingerprint(target.upstream_model),
    }

    def chunk(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> dict[str, Any]:
        out = {**envelope, "choices": choices}
        if include_usage or usage is not None:
            out["usage"] = usage
        return out

    def choice(index: int, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

    for index, c in enumerate(answer.choices):
        if c.tool_calls:
            # OpenAI streams a tool call as its id and name first, then its arguments.
            calls = [
                {"index": i, "id": call["id"], "type": "function", "function": {"name": call["function"]["name"]}}
                for i, call in enumerate(c.tool_calls)
            ]
            yield chunk([choice(index, {"role": "assistant", "content": None, "tool_calls": calls})])
            for i, call in enumerate(c.tool_calls):
                arguments = {"index": i, "function": {"arguments": call["function"]["arguments"]}}
                yield chunk([choice(index, {"tool_calls": [arguments]})])
            continue
        yield chunk([choice(index, {"role": "assistant", "content": ""})])

    # With n > 1 the choices take turns, as OpenAI interleaves them.
    pieces = [_stream_pieces(c.content) for c in answer.choices]
    sent = 0
    for round_ in range(max((len(p) for p in pieces), default=0)):
        for index, choice_pieces in enumerate(pieces):
            if round_ >= len(choice_pieces):
                continue
            if cut_after is not None and sent >= cut_after:
                raise _stream_cut()
            yield chunk([choice(index, {"content": choice_pieces[round_]})])
            sent += 1
    # An answer with exactly ``cut_after`` content chunks still loses its finish and usage.
    if cut_after is not None and sent >= cut_after:
        raise _stream_cut()

    for index, c in enumerate(answer.choices):
        yield chunk([choice(index, {}, c.finish_reason)])
    yield chunk([], answer.usage_body())


def _stream_cut() -> StreamCut:
    return StreamCut(PROVIDER_NAME, 502, "simulated stream cut mid-answer", error_type="stream_cut")


def _fingerprint(model: str) -> str:
    return "fp_sim_" + hashlib.sha256(model.encode("utf-8")).hexdigest()[:10]


def _seconds(milliseconds: Any) -> float:
    return max(0.0, float(milliseconds) / 1000.0)
