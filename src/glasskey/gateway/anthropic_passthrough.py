"""The faithful path of ``/v1/messages``: an Anthropic-format request served by an Anthropic route
is sent as its caller wrote it, and Anthropic's answer or events come back as they were sent.

Only what must change is changed: ``model`` becomes the route's upstream model, and the route's
credential goes in ``x-api-key``. The caller's ``anthropic-version`` and ``anthropic-beta`` go with
it (to Anthropic routes only). Thinking blocks and their ``signature``, ``redacted_thinking``,
``cache_control``, citations, server tools and their blocks, ``top_k``, ``container``... all travel
untouched both ways; the cache token counts in usage are billed (``usage_to_openai``).

The money path is the lifecycle's, unchanged: the request is quoted and held on
``bounding_body`` (every block counted as the bytes of its JSON, so thinking signatures and tool
results are inside the hold's input bound), the same fallback walks the key's routes, and a route
of another provider gets the translation (``anthropic_inbound.to_chat_body``); what cannot be
translated is refused there, naming the parameter and the route's provider. A stream's events are
relayed as they came, but its ``message_stop`` leaves only once the charge and receipt are
committed (``EventTally.ending``), as ``[DONE]`` does on the OpenAI side. No I/O here but the
provider's.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import orjson

from glasskey.errors import ClientError, GlasskeyError, RouteError
from glasskey.errors import error_body as openai_error_body
from glasskey.gateway.anthropic_inbound import Untranslatable, to_chat_body
from glasskey.gateway.anthropic_inbound_reply import stream_error_body
from glasskey.gateway.anthropic_inbound_stream import event
from glasskey.gateway.fallback import first_item, open_stream, skipped_attempt
from glasskey.gateway.outcomes import OPENAI_SHAPE
from glasskey.gateway.relay import ChunkTally, Tally
from glasskey.gateway.requests import check_chat_body
from glasskey.gateway.run import Run
from glasskey.providers.anthropic import AnthropicProvider
from glasskey.providers.anthropic_translate import PROVIDER_NAME, NativeEvent, usage_to_openai
from glasskey.providers.base import ChatResult, Provider, RouteTarget, Usage
from glasskey.providers.sealed import SealedCredentialProvider
from glasskey.receipts.records import Attempt
from glasskey.routing.routes import Route

SHAPE = "anthropic"
# The receipt's flag for a request Anthropic served from the caller's own body.
PASSTHROUGH_FLAG = "anthropic_passthrough"
# ``anthropic-beta`` is a comma-separated list of feature names; anything else is refused, never sent.
BETA_PATTERN = re.compile(r"^[A-Za-z0-9._-]+(\s*,\s*[A-Za-z0-9._-]+)*$")
BETA_MAX_CHARS = 1000


def beta_header(values: list[str]) -> str | None:
    """The caller's ``anthropic-beta`` headers as one value, checked; None when there are none."""
    if not values:
        return None
    joined = ",".join(value.strip() for value in values)
    if len(joined) > BETA_MAX_CHARS or not BETA_PATTERN.match(joined):
        raise ClientError(
            f"`anthropic-beta` must be a comma-separated list of feature names (at most {BETA_MAX_CHARS} characters)",
            param="anthropic-beta",
            code="invalid_anthropic_beta",
        )
    return joined


class Passthrough:
    """One Anthropic-format request: the caller's body for Anthropic routes, its translation for others."""

    shape = SHAPE

    def __init__(self, version: str | None, beta: list[str]) -> None:
        self.version = version
        self.beta = beta
        # Sent to Anthropic routes only; without a version the route's own (``anthropic_version``) is used.
        self.headers: dict[str, str] = {}
        self.body: dict[str, Any] = {}
        self.translated: dict[str, Any] | None = None
        self.refusal: ClientError | None = None

    def take(self, body: dict[str, Any]) -> dict[str, Any]:
        """Keep the caller's body; translate it for other routes now (a malformed body is refused at
        once, one the OpenAI shape cannot carry only when such a route is tried); return the body the
        gateway quotes and holds on."""
        self.body = body
        try:
            translated = to_chat_body(body)
        except Untranslatable as refusal:
            self.refusal = refusal
        else:
            try:  # a bound of the OpenAI shape (four stop sequences, ...) need not hold for Anthropic itself
                check_chat_body(translated)
                self.translated = translated
            except ClientError as refusal:
                self.refusal = refusal
        pairs = (("anthropic-version", self.version), ("anthropic-beta", beta_header(self.beta)))
        self.headers = {name: value for name, value in pairs if value}
        return bounding_body(body)

    def serves(self, route: Route) -> bool:
        return route.provider == PROVIDER_NAME

    def servable(self, routes: list[Route], attempts: list[Attempt]) -> list[Route]:
        """The routes that can serve this request: all of them, unless it cannot be translated, when
        those of other providers are skipped (each a skipped attempt on the receipt). None left is
        the translation's 400, naming the first route's provider."""
        if self.translated is not None:
            return routes
        kept = [route for route in routes if self.serves(route)]
        if not kept:
            self.translated_for(routes[0])
        for route in routes:
            if not self.serves(route):
                message = self.refusal.message if self.refusal is not None else "cannot be translated"
                attempts.append(skipped_attempt(route, "untranslatable", message))
        return kept

    def translated_for(self, route: Route) -> dict[str, Any]:
        """The OpenAI chat body for a route of another provider, or the 400 saying why there is none."""
        if self.translated is not None:
            return self.translated
        refusal = self.refusal or ClientError("the request cannot be translated", param=None)
        raise ClientError(
            f"the route {route.id} (provider {route.provider}) cannot serve this request: {refusal.message}",
            param=refusal.param,
            code=refusal.code,
        )

    def native_for(self, route: Route) -> dict[str, Any]:
        """The caller's body, with the one change a route needs: its upstream model."""
        return {**self.body, "model": route.upstream_model}

    async def answer(self, provider: Provider, route: Route) -> ChatResult:
        anthropic, target = _anthropic(provider, route.target())
        return await anthropic.messages(target, self.native_for(route), self.headers)

    async def open(self, provider: Provider, route: Route) -> tuple[AsyncIterator[Any], Any]:
        """Start the stream and wait for its first event: until then, a failure may still fall back."""
        anthropic, target = _anthropic(provider, route.target())
        events = anthropic.stream_messages(target, self.native_for(route), self.headers, pauses=True)
        return await first_item(events, route)

    # -- one try of the lifecycle's fallback, on ``route`` --------------------------------------

    async def attempt(self, run: Run, provider: Provider, route: Route) -> ChatResult:
        """The answer: the caller's own body on an Anthropic route, its translation on another."""
        if self._passing_through(run, route):
            return await self.answer(provider, route)
        return await provider.chat(route.target(), run.body_for(route, self.translated_for(route)))

    async def open_attempt(self, run: Run, provider: Provider, route: Route) -> tuple[AsyncIterator[Any], Any, Tally]:
        """The stream, its first item and the tally the relay reads it with (events or chunks)."""
        if self._passing_through(run, route):
            return (*await self.open(provider, route), EventTally())
        sent = run.body_for(route, self.translated_for(route))
        return (*await open_stream(provider, route, sent), ChunkTally(sent))

    def _passing_through(self, run: Run, route: Route) -> bool:
        """Whether ``route`` gets the caller's body as it is: then no parameter is dropped, and the
        receipt says so (a fallback to a route of another provider takes the flag back)."""
        run.notes = [note for note in run.notes if note != PASSTHROUGH_FLAG]
        if not self.serves(route):
            return False
        run.dropped_params = ()
        run.notes.append(PASSTHROUGH_FLAG)
        return True


def answer_shape(passthrough: Passthrough | None, route: Route) -> str:
    """The shape of what ``route`` answered: Anthropic's when it was passed through, else OpenAI's."""
    return passthrough.shape if passthrough is not None and passthrough.serves(route) else OPENAI_SHAPE


def _anthropic(provider: Provider, target: RouteTarget) -> tuple[AnthropicProvider, RouteTarget]:
    """The anthropic provider itself and the target with its credential opened (``providers.sealed``)."""
    if isinstance(provider, SealedCredentialProvider):
        target = provider.opened(target)
        provider = provider.inner
    if not isinstance(provider, AnthropicProvider):  # an Anthropic route is served by the anthropic provider
        raise RouteError(f"the {provider.name} provider cannot send an Anthropic body", code="internal_error")
    return provider, target


# -- the bound --------------------------------------------------------------------------------


def bounding_body(body: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI chat body whose bounds (``pricing.tokens``) cover what the model reads of ``body``.

    One message per turn (and one for ``system``), each block a text part holding the block's JSON,
    so every byte of thinking, signatures, tool results, documents and server tool blocks is inside
    the input bound; images count as images (their own per-image maximum, as on the OpenAI side).
    It is never sent anywhere.
    """
    messages: list[dict[str, Any]] = []
    if body.get("system"):
        messages.append({"role": "system", "content": _parts(body["system"])})
    raw = body.get("messages")
    for message in raw if isinstance(raw, list) else ():
        role = message.get("role") if isinstance(message, dict) else None
        content = message.get("content") if isinstance(message, dict) else message
        messages.append({"role": role if isinstance(role, str) else "user", "content": _parts(content)})
    bounded: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    if body.get("max_tokens") is not None:
        bounded["max_tokens"] = body["max_tokens"]
    extras = {name: body[name] for name in ("tools", "mcp_servers", "output_config") if body.get(name)}
    if extras:
        # Read by the model as definitions; counted as their JSON (``tools`` also adds the vendors' overhead).
        bounded["tools"] = [{"type": "function", "function": {"name": "definitions", "parameters": extras}}]
    if body.get("stream") is True:
        bounded.update(stream=True, stream_options={"include_usage": True})
    return bounded


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        return [{"type": "text", "text": orjson.dumps(content).decode()}]
    return [
        {"type": "image_url", "image_url": {"url": ""}}
        if isinstance(block, dict) and block.get("type") == "image"
        else {"type": "text", "text": orjson.dumps(block).decode()}
        for block in content
    ]


# -- the stream -------------------------------------------------------------------------------


class EventTally:
    """Anthropic's events relayed byte for byte (a ``relay.Tally``), with the usage they report.

    Usage comes from ``message_start`` and each ``message_delta`` (cumulative counts), cache reads
    and writes included; the text, thinking and tool input that went by are what an estimate would
    count and what makes a cut stream billable. ``message_stop`` is held back for ``ending``.
    """

    def __init__(self) -> None:
        self.reported: dict[str, Any] = {}
        self.usage: Usage | None = None
        self.finished = False
        self.parts: list[str] = []
        self.stop = b""

    def take(self, item: Any) -> bytes:
        native: NativeEvent = item
        kind, body = native.kind, native.body
        if kind == "message_start" and isinstance(body.get("message"), dict):
            self._report(body["message"].get("usage"))
        elif kind == "message_delta":
            self._report(body.get("usage"))
            delta = body.get("delta")
            self.finished = self.finished or (isinstance(delta, dict) and delta.get("stop_reason") is not None)
        elif kind == "content_block_delta" and isinstance(body.get("delta"), dict):
            delta = body["delta"]
            for name in ("text", "thinking", "partial_json"):
                if isinstance(delta.get(name), str):
                    self.parts.append(delta[name])
        written = (b"event: " + native.name.encode() + b"\n" if native.name else b"") + b"data: "
        written += native.data.encode() + b"\n\n"
        if kind == "message_stop":
            self.stop = written
            return b""
        return written

    def _report(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self.reported.update({key: value for key, value in usage.items() if value is not None})
            self.usage = usage_to_openai(self.reported)[1]

    def text(self) -> str:
        return "".join(self.parts)

    def ending(self) -> bytes:
        return self.stop

    def error_event(self, failure: GlasskeyError, request_id: str) -> bytes:
        """The error as the translated stream sends it: Anthropic's ``error`` event with glasskey's facts."""
        return event("error", stream_error_body(openai_error_body(failure, request_id)["error"]))
