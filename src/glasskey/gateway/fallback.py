"""Fallback: a request's routes, tried in order, each try an attempt on its receipt.

One loop serves answers and streams alike. A route is skipped when its breaker is open, or when
the gateway-wide retry budget for backups is spent; the loop moves on only after a retriable
failure. For a stream, "success" is its first chunk: after it, the client has bytes and nothing
may fall back (the relay records how the attempt ended).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from glasskey.errors import GlasskeyError, RouteError
from glasskey.gateway.outcomes import upstream_error
from glasskey.gateway.run import Run
from glasskey.providers.base import Provider, ProviderError
from glasskey.providers.sse import Pause
from glasskey.receipts.records import Attempt
from glasskey.routing.health import counts_against_route
from glasskey.routing.routes import Route
from glasskey.services import Services

T = TypeVar("T")
Chunk = dict[str, Any]
OpenedStream = tuple[AsyncIterator[Chunk | Pause], Chunk]


class Fallback:
    def __init__(self, services: Services) -> None:
        self.services = services

    async def first_success(
        self, run: Run, routes: list[Route], call: Callable[[Provider, Route], Awaitable[T]]
    ) -> tuple[T, Route, float]:
        """The first route whose ``call`` succeeds: its result, the route and when its attempt began.

        The caller records the attempt's success (``succeeded``) once it knows it: at once for an
        answer, at the end of the relay for a stream.
        """
        last: ProviderError | None = None
        for route in routes:
            if not self._may_try(run, route):
                if run.receipt.attempts[-1].error_class == "retry_budget_exhausted":
                    break
                continue
            run.use_route(route)
            began = self.services.monotonic()
            try:
                result = await call(self.services.providers[route.provider], route)
            except ProviderError as error:
                self.failed(run, route, began, error)
                last = error
                if not error.retriable:
                    break
                continue
            return result, route, began
        raise self._all_failed(run, last)

    def succeeded(self, run: Run, route: Route, began: float) -> None:
        latency_ms = int((self.services.monotonic() - began) * 1000)
        self.services.health.record(route.id, ok=True, latency_ms=latency_ms, ttft_ms=run.receipt.ttft_ms)
        self.services.metrics.attempt(route.id, route.provider, ok=True, latency_ms=latency_ms)
        if run.receipt.ttft_ms is not None:
            self.services.metrics.first_token(route.id, run.receipt.ttft_ms)
        run.receipt.attempts.append(_attempt(route, "succeeded", latency_ms, http_status=200))

    def failed(self, run: Run, route: Route, began: float, error: ProviderError) -> None:
        latency_ms = int((self.services.monotonic() - began) * 1000)
        error_class = "timeout" if error.timeout else error.error_type
        self.services.metrics.attempt(
            route.id, route.provider, ok=False, latency_ms=latency_ms, error_class=error_class
        )
        if counts_against_route(error):
            self.services.health.record(route.id, ok=False, latency_ms=latency_ms, error_class=error_class)
        else:
            # The client's own request was refused: that says nothing about the route's health.
            self.services.health.release_probe(route.id)
        attempt = _attempt(route, "failed", latency_ms, http_status=error.status, error_class=error_class)
        attempt.error_message = error.message[:500]
        run.receipt.attempts.append(attempt)

    def _may_try(self, run: Run, route: Route) -> bool:
        """Whether this route may be tried now: its breaker, and the retry budget for backups."""
        budget = self.services.retry_budget
        tried = any(a.status == "failed" for a in run.receipt.attempts)
        if tried and not budget.try_retry():
            message = "the gateway-wide retry budget is spent; no more backups now"
            run.receipt.attempts.append(skipped_attempt(route, "retry_budget_exhausted", message))
            return False
        if not self.services.health.try_acquire(route.id):
            if tried:
                budget.end_retry()
            circuit = self.services.health.snapshot(route.id)["circuit"]
            run.receipt.attempts.append(
                skipped_attempt(route, "circuit_open", f"the route's breaker is {circuit}; not tried")
            )
            return False
        if tried:
            run.retries += 1
        return True

    def _all_failed(self, run: Run, last: ProviderError | None) -> GlasskeyError:
        attempts = run.receipt.attempts
        if last is None:
            return RouteError(
                "No healthy route: every route this key may use has an open breaker",
                code="no_healthy_route",
                details={"attempts": [a.__dict__ for a in attempts]},
            )
        if len(attempts) == 1:
            return upstream_error(last)
        summary = "; ".join(f"{a.route_id} ({a.provider}) {a.http_status} {a.error_class}" for a in attempts)
        return RouteError(
            f"Every route failed: {summary}",
            code="all_routes_failed",
            status_code=502,
            details={"attempts": [a.__dict__ for a in attempts]},
        )


async def open_stream(provider: Provider, route: Route, body: dict[str, Any]) -> OpenedStream:
    """Start a stream and wait for its first chunk: until then, a failure may still fall back."""
    return await first_item(provider.stream_chat(route.target(), body, pauses=True), route)


async def first_item(iterator: AsyncIterator[Any], route: Route) -> tuple[AsyncIterator[Any], Any]:
    """Wait for a started stream's first item (any shape) past its pauses; an empty stream is a failure."""
    try:
        first = await iterator.__anext__()
        while isinstance(first, Pause):  # nothing to send yet
            first = await iterator.__anext__()
    except StopAsyncIteration:
        await close_stream(iterator)
        raise ProviderError(route.provider, 502, "the upstream stream ended before any chunk") from None
    except BaseException:
        await close_stream(iterator)
        raise
    return iterator, first


async def close_stream(iterator: AsyncIterator[Any]) -> None:
    """Close an upstream stream so its connection is released (generators have ``aclose``)."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


def _attempt(
    route: Route, status: str, latency_ms: int, *, http_status: int | None = None, error_class: str | None = None
) -> Attempt:
    return Attempt(
        route_id=route.id,
        provider=route.provider,
        upstream_model=route.upstream_model,
        status=status,
        latency_ms=latency_ms,
        http_status=http_status,
        error_class=error_class,
    )


def skipped_attempt(route: Route, why: str, message: str) -> Attempt:
    """The receipt's record of a route not tried, and why."""
    attempt = _attempt(route, "skipped", 0, error_class=why)
    attempt.error_message = message
    return attempt
