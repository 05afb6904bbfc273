"""The relay of one stream: the upstream's chunks to the client, then the settlement, then ``[DONE]``.

The stream is past its first chunk when the relay starts (``fallback.open_stream``), so nothing
here falls back. Whatever ends the relay — the upstream's end, its failure mid-answer, the client
leaving, a bug — the stream is settled for what was generated, in a shielded scope. The end of the
stream is the client's success: ``data: [DONE]`` leaves only once the charge and the receipt are
committed, as a JSON answer does; so does the in-band error of an upstream that broke mid-answer.

A ``Tally`` reads the stream's items and writes them for the client: ``ChunkTally`` for OpenAI
chunks (``data:`` lines closed by ``[DONE]``), ``gateway.anthropic_passthrough.EventTally`` for
Anthropic's own events relayed as they came (closed by their held-back ``message_stop``).

While it relays, a stream records what it has forwarded about once a second (``gateway.progress``),
so that a process killed mid-stream leaves the next one enough to charge the client for it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Protocol

import anyio

from glasskey.errors import ClientError, GlasskeyError, RouteError, error_body
from glasskey.gateway.fallback import Fallback, close_stream
from glasskey.gateway.outcomes import SSE_DONE, Emit, Flush, sse, upstream_error
from glasskey.gateway.progress import Progress, Recorder, charge_of
from glasskey.gateway.run import Run
from glasskey.gateway.usage import estimate_tokens, text_of_delta, usage_from_openai
from glasskey.pricing.tokens import chat_input_tokens
from glasskey.providers.base import ProviderError, Usage
from glasskey.providers.sse import Pause
from glasskey.routing.routes import Route

log = logging.getLogger(__name__)

Settle = Callable[..., Awaitable[int]]


class Tally(Protocol):
    """What a relay needs of one stream's shape: each item as the bytes the client gets, and an
    account of what went by (usage reported, text generated, whether the answer finished)."""

    usage: Usage | None
    finished: bool

    def take(self, item: Any) -> bytes:
        """The bytes to send for ``item`` (empty: nothing), noting its usage, text and finish."""
        ...

    def text(self) -> str: ...

    def ending(self) -> bytes:
        """What closes a stream that succeeded, sent only once its settlement is committed."""
        ...

    def error_event(self, failure: GlasskeyError, request_id: str) -> bytes:
        """The in-band error that ends a stream broken mid-answer (after its settlement too)."""
        ...


class ChunkTally:
    """OpenAI ``chat.completion.chunk`` dicts, written as ``data:`` lines and closed by ``[DONE]``."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.include_usage = _includes_usage(body)
        self.usage: Usage | None = None
        self.finished = False
        self.parts: list[str] = []

    def take(self, item: Any) -> bytes:
        chunk: dict[str, Any] = item
        reported = chunk.get("usage")
        if reported:
            self.usage = usage_from_openai(reported) or self.usage
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            if isinstance(choice, dict):
                self.parts.append(text_of_delta(choice.get("delta")))
                self.finished = self.finished or choice.get("finish_reason") is not None
        if not self.include_usage and reported and not choices:
            return b""  # a usage-only chunk the client did not ask for
        if not self.include_usage:
            chunk.pop("usage", None)
        return sse(chunk)

    def text(self) -> str:
        return "".join(self.parts)

    def ending(self) -> bytes:
        return SSE_DONE

    def error_event(self, failure: GlasskeyError, request_id: str) -> bytes:
        return sse({"error": error_body(failure, request_id)["error"]})


@dataclass
class Relay:
    """Everything a stream's relay needs, handed over explicitly by the lifecycle."""

    run: Run
    route: Route
    began: float
    body: dict[str, Any]
    iterator: AsyncIterator[Any]
    first: Any
    fallback: Fallback
    settle: Settle
    tally: Tally  # how the stream's items are read and written (``ChunkTally`` for OpenAI chunks)
    # Records the forwarded output about once a second (``gateway.progress``). None: through the
    # services' writer (non-durable) and monotonic clock, which the fallback already carries.
    recorder: Recorder | None = None

    async def __call__(self, emit: Emit, flush: Flush) -> None:
        run = self.run
        tally = self.tally
        recorder = self._recorder()
        relayed = False  # the upstream's stream reached its end and all of it went to the client
        failure: GlasskeyError | None = None
        try:
            chunk: Any = self.first
            while chunk is not None:
                if isinstance(chunk, Pause):  # the stream is about to wait: what is held goes out
                    await flush()
                    chunk = await anext(self.iterator, None)
                    continue
                out = tally.take(chunk)
                if out:
                    await emit(out)
                if recorder is not None and recorder.due():
                    await flush()  # a record counts only output already handed to the client's connection
                    await self._record(recorder)
                chunk = await anext(self.iterator, None)
            relayed = True
        except ProviderError as error:
            self.fallback.failed(run, self.route, self.began, error)
            failure = upstream_error(error)
            failure.message = f"The upstream stream broke mid-answer: {failure.message}"
        except anyio.get_cancelled_exc_class():
            run.notes.append("client_disconnected")
            raise
        except Exception:
            # A bug while relaying: the request failed, and the receipt must say so.
            failure = RouteError("internal gateway error while streaming", code="internal_error", status_code=500)
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await self._end(emit, flush, relayed, failure)

    def _recorder(self) -> Recorder | None:
        """This relay's progress recorder, started now; none without a hold (nothing to charge)."""
        if self.run.hold is None:
            return None
        if self.recorder is None:
            services = self.fallback.services
            submit = partial(services.writer.submit, durable=False)
            self.recorder = Recorder(submit, services.monotonic, services.clock)
        self.recorder.start()
        return self.recorder

    def progress(self, now: datetime) -> Progress | None:
        """What has been forwarded so far, counted as ``_end`` would count it for a cut stream
        (reported usage, else an estimate from the text), with its charge; None before any text."""
        run, hold, tally = self.run, self.run.hold, self.tally
        text = tally.text()
        if hold is None or not text:
            return None
        if tally.usage is not None:
            usage, source = tally.usage, "provider_reported"
        else:
            usage, source = Usage(chat_input_tokens(self.body).estimate, estimate_tokens(text)), "estimated"
        # The request's bounds, as ``Run.bounded`` applies them at the settlement (without its notes).
        input_tokens = min(usage.input_tokens, run.max_input_tokens or usage.input_tokens)
        output_tokens = min(usage.output_tokens, run.max_output_tokens or usage.output_tokens)
        usage = Usage(max(input_tokens, 0), max(output_tokens, 0), min(max(usage.cached_tokens, 0), input_tokens))
        route = self.route
        return Progress(
            transfer_id=hold.transfer_id,
            route_id=route.id,
            provider=route.provider,
            upstream_model=route.upstream_model,
            usage=usage,
            usage_source=source,
            prices=route.prices,
            charge_micros=charge_of(usage, route.prices, hold.amount_micros),
            recorded_at=now,
        )

    async def _record(self, recorder: Recorder) -> None:
        progress = self.progress(recorder.clock())
        if progress is None:
            recorder.skip()
            return
        try:
            await recorder.record(progress)
        except Exception:  # a lost progress write costs the record of a crash, never the stream
            log.warning("recording a stream's progress failed", exc_info=True)

    async def _end(self, emit: Emit, flush: Flush, relayed: bool, failure: GlasskeyError | None) -> None:
        run = self.run
        disconnected = "client_disconnected" in run.notes
        if not disconnected:
            await flush()  # what was relayed goes out before the settlement's commit
        await close_stream(self.iterator)
        if failure is None:
            self.fallback.succeeded(run, self.route, self.began)
        usage, text = self.tally.usage, self.tally.text()
        if not text and (failure is not None or not self.tally.finished):
            # Zero output with an error or no finish reason costs nothing, whatever was reported.
            if usage is not None:
                run.notes.append("reported_usage_not_billed_no_output")
            usage = Usage(0, 0)
        elif usage is not None:
            run.receipt.usage_source = "provider_reported"
        else:
            # Bill only what was generated: the text that reached us, counted conservatively.
            run.receipt.usage_source = "estimated"
            run.notes.append("usage_estimated_from_streamed_text")
            usage = Usage(chat_input_tokens(self.body).estimate, estimate_tokens(text))
        if failure is not None:
            await self.settle(run, self.route, usage, status="failed", http_status=failure.status_code, error=failure)
            if not disconnected and failure.source == "upstream":
                # Like [DONE], the in-band error ends the stream only once its receipt is committed.
                await emit(self.tally.error_event(failure, run.receipt.request_id))
        elif disconnected:
            left = ClientError("The client closed the connection before the stream ended", code="client_disconnected")
            await self.settle(run, self.route, usage, status="failed", http_status=499, error=left)
        else:
            await self.settle(run, self.route, usage, status="succeeded", http_status=200)
            if relayed:
                await emit(self.tally.ending())


def _includes_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))
