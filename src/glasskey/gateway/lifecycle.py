"""The life of one request: authenticate, check the model, quote, hold, call, meter, settle, receipt.

Every request that reaches the lifecycle leaves exactly one receipt, whatever happens. The
hold is taken before any upstream call; settlement posts the actual charge (never above the
hold) and releases the rest, in the same transaction as the receipt, so the receipt's charge
and the ledger's posted charge cannot disagree. Database work runs in worker threads so the
event loop keeps serving other requests.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from sqlalchemy import Connection

from glasskey.errors import ClientError, GlasskeyError, RouteError, error_body
from glasskey.gateway.embeddings import encode_embeddings
from glasskey.gateway.outcomes import SSE_DONE, Emit, JSONOutcome, StreamOutcome, sse, upstream_error
from glasskey.gateway.requests import check_chat_body, check_embeddings_body, parse_json_object
from glasskey.gateway.run import Hold, Run
from glasskey.gateway.settlement import send_settlement
from glasskey.gateway.usage import estimate_tokens, text_of_body, text_of_delta, usage_from_openai
from glasskey.keys import secret as key_secret
from glasskey.keys.budget import hold_budget, release_budget_hold
from glasskey.keys.service import KeyRecord, bearer_token, find_by_public_id, verify_parsed
from glasskey.ledger import (
    SYSTEM_REVENUE,
    InsufficientFunds,
    get_balance,
    send_pending,
)
from glasskey.money import format_micros
from glasskey.orgs.service import wallet_account_id
from glasskey.pricing.catalog import get_model
from glasskey.pricing.metering import charge_for
from glasskey.pricing.quote import Bounds, request_bounds
from glasskey.pricing.tokens import chat_input_tokens
from glasskey.providers.base import Provider, ProviderError, Usage
from glasskey.providers.sse import before_wait
from glasskey.receipts.records import Attempt, Receipt, write_receipt
from glasskey.routing.health import counts_against_route
from glasskey.routing.routes import Route, candidates
from glasskey.routing.selection import Selection, check_allowed, selection_from
from glasskey.services import Services
from glasskey.store.writer import Later

log = logging.getLogger("glasskey.gateway")
T = TypeVar("T")
BodyReader = Callable[[], Awaitable[bytes]]


class Lifecycle:
    def __init__(self, services: Services) -> None:
        self.services = services

    # -- plumbing -------------------------------------------------------------------------

    async def read(self, fn: Callable[[Connection], T]) -> T:
        def work() -> T:
            with self.services.db.read() as conn:
                return fn(conn)

        return await anyio.to_thread.run_sync(work)

    async def _write(self, fn: Callable[[Connection], Later[T]]) -> T:
        """A settlement, group-committed with other requests' writes.

        Without a savepoint: a settlement refuses nothing (a lost or expired hold is charged
        directly, in a savepoint of its own), so it never raises a refusal half done. A request
        cancelled meanwhile still learns what was charged.
        """
        return await self.services.writer.submit(fn, savepoint=False, lone=self._alone(), wait_out_cancellation=True)

    def _alone(self) -> bool:
        """Whether this is the only request the process is serving (its writes may skip the queue)."""
        return self.services.retry_budget.in_flight <= 1

    def _elapsed_ms(self, run: Run) -> int:
        return int((self.services.monotonic() - run.started) * 1000)

    def new_run(self, request_id: str, endpoint: str) -> Run:
        receipt = Receipt(request_id=request_id, endpoint=endpoint, created_at=self.services.clock())
        self.services.retry_budget.start_request()
        return Run(receipt=receipt, started=self.services.monotonic())

    # -- the steps ------------------------------------------------------------------------

    async def _verified_key(self, authorization: str | None, run: Run | None = None) -> KeyRecord:
        """The key behind the request, from the one-second cache; the secret is checked every time."""
        parsed = key_secret.parse(bearer_token(authorization))
        record = None
        if parsed is not None:
            public_id = parsed[0]
            if run is not None:
                # The public id is not secret, and lets a failed login be traced to the key it named.
                run.receipt.key_public_id = public_id
            record = await self.services.cache.get(("key", public_id), partial(find_by_public_id, public_id=public_id))
        return verify_parsed(parsed, record, pepper=self.services.pepper, now=self.services.clock())

    async def authenticate(self, run: Run, authorization: str | None) -> KeyRecord:
        key = await self._verified_key(authorization, run)
        run.receipt.key_id = key.id
        run.receipt.org_id = key.org_id
        run.receipt.settlement = key.policy.settlement
        run.receipt.wallet_kind = key.policy.wallet_kind
        return key

    async def _take_hold(self, run: Run, key: KeyRecord, model: str, amount: int) -> Hold:
        now = self.services.clock()
        expires_at = now + self._hold_ttl()
        kind = key.policy.wallet_kind
        wallet_id = await self.services.cache.get(
            ("wallet", key.org_id, kind), partial(wallet_account_id, org_id=key.org_id, kind=kind)
        )

        def work(conn: Connection) -> Later[Hold]:
            # Run without a savepoint (see GroupCommitWriter.submit): every refusal below leaves
            # nothing behind, the budget hold being released at once when the wallet refuses.
            period = hold_budget(conn, key.id, key.policy, amount, now)
            taking = send_pending(
                conn,
                debit_account_id=wallet_id,
                credit_account_id=SYSTEM_REVENUE[key.policy.settlement],
                amount_micros=amount,
                now=now,
                expires_at=expires_at,
                request_id=run.receipt.request_id,
                key_id=key.id,
                budget_period=period,
                memo=f"hold for {model}",
            )

            def taken() -> Hold:
                try:
                    transfer = taking()
                except GlasskeyError as refusal:
                    release_budget_hold(conn, key.id, key.policy, period, amount)
                    if not isinstance(refusal, InsufficientFunds):
                        raise
                    available = get_balance(conn, wallet_id).available_micros
                    raise InsufficientFunds(
                        f"The {kind} wallet has ${format_micros(available)} available;"
                        f" this request may cost up to ${format_micros(amount)}."
                        " Top up the wallet or lower max_tokens.",
                        code="insufficient_balance",
                    ) from None
                return Hold(
                    transfer_id=transfer.id,
                    amount_micros=amount,
                    budget_period=period,
                    wallet_account_id=wallet_id,
                    revenue_account_id=transfer.credit_account_id,
                )

            return Later(taken)

        # Once submitted, the hold is taken whatever happens to this request: wait for it, so
        # that a cancelled request still knows the hold it must release.
        hold = await self.services.writer.submit(
            work, durable=False, savepoint=False, lone=self._alone(), wait_out_cancellation=True
        )
        run.hold = hold
        run.receipt.hold_micros = amount
        run.receipt.transfer_id = hold.transfer_id
        return hold

    def _hold_ttl(self) -> timedelta:
        return timedelta(seconds=self.services.settings.hold_ttl_seconds)

    async def key_of(self, authorization: str | None) -> KeyRecord:
        """The key behind a request that leaves no receipt (metadata endpoints)."""
        return await self._verified_key(authorization)

    async def _selection(self, key: KeyRecord, model_name: str, kind: str) -> Selection:
        """The routes this key may use for the model, ordered by policy and health, from the cache."""
        check_allowed(key, model_name)
        cache = self.services.cache
        model = await cache.get(("model", model_name), partial(get_model, name=model_name))
        settlement = key.policy.settlement
        routes = await cache.get(
            ("routes", model_name, settlement), partial(candidates, model=model_name, settlement=settlement)
        )
        return selection_from(model, routes, key, kind=kind, board=self.services.health)

    async def prepare(
        self, run: Run, authorization: str | None, read_body: BodyReader, *, endpoint: str = "chat"
    ) -> tuple[dict[str, Any], Bounds, list[Route]]:
        """Everything before the upstream call: parse, authenticate, limit, quote and hold."""
        body = parse_json_object(await read_body())
        if isinstance(body.get("model"), str):
            run.receipt.requested_model = body["model"][:200]
        run.receipt.stream = body.get("stream") is True
        if endpoint == "embeddings":
            check_embeddings_body(body)
        else:
            check_chat_body(body)
        key = await self.authenticate(run, authorization)
        await self.services.rate_limiter.acquire(key.id, key.policy.rpm_limit)
        selection = await self._selection(key, str(body["model"]), "embedding" if endpoint == "embeddings" else "chat")
        bounds = request_bounds(selection, body, endpoint=endpoint)
        routes = selection.usable
        run.max_input_tokens = bounds.max_input_tokens
        run.max_output_tokens = bounds.max_output_tokens
        self._use_route(run, routes[0])
        await self._take_hold(run, key, selection.model.name, bounds.max_charge_micros)
        return body, bounds, routes

    def _use_route(self, run: Run, route: Route) -> None:
        run.receipt.route_id = route.id
        run.receipt.provider = route.provider
        run.receipt.upstream_model = route.upstream_model
        run.receipt.input_price_per_mtok_micros = route.prices.input_per_mtok_micros
        run.receipt.output_price_per_mtok_micros = route.prices.output_per_mtok_micros
        run.receipt.cached_price_per_mtok_micros = route.prices.cached_per_mtok_micros

    def _upstream_body(self, body: dict[str, Any], route: Route) -> dict[str, Any]:
        return {**body, "model": route.upstream_model}

    def _attempt_failed(self, run: Run, route: Route, began: float, error: ProviderError) -> None:
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
        run.receipt.attempts.append(
            Attempt(
                route_id=route.id,
                provider=route.provider,
                upstream_model=route.upstream_model,
                status="failed",
                latency_ms=latency_ms,
                http_status=error.status,
                error_class=error_class,
                error_message=error.message[:500],
            )
        )

    def _attempt_succeeded(self, run: Run, route: Route, began: float) -> None:
        latency_ms = int((self.services.monotonic() - began) * 1000)
        self.services.health.record(route.id, ok=True, latency_ms=latency_ms, ttft_ms=run.receipt.ttft_ms)
        self.services.metrics.attempt(route.id, route.provider, ok=True, latency_ms=latency_ms)
        if run.receipt.ttft_ms is not None:
            self.services.metrics.first_token(route.id, run.receipt.ttft_ms)
        run.receipt.attempts.append(
            Attempt(
                route_id=route.id,
                provider=route.provider,
                upstream_model=route.upstream_model,
                status="succeeded",
                latency_ms=latency_ms,
                http_status=200,
            )
        )

    def _attempt_skipped(self, run: Run, route: Route, why: str, message: str) -> None:
        run.receipt.attempts.append(
            Attempt(
                route_id=route.id,
                provider=route.provider,
                upstream_model=route.upstream_model,
                status="skipped",
                latency_ms=0,
                error_class=why,
                error_message=message,
            )
        )

    def _may_try(self, run: Run, route: Route) -> bool:
        """Whether this route may be tried now: its breaker, and the retry budget for backups."""
        tried = any(a.status == "failed" for a in run.receipt.attempts)
        if tried and not self.services.retry_budget.try_retry():
            self._attempt_skipped(
                run, route, "retry_budget_exhausted", "the gateway-wide retry budget is spent; no more backups now"
            )
            return False
        if not self.services.health.try_acquire(route.id):
            if tried:
                self.services.retry_budget.end_retry()
            snapshot = self.services.health.snapshot(route.id)
            self._attempt_skipped(
                run, route, "circuit_open", f"the route's breaker is {snapshot['circuit']}; not tried"
            )
            return False
        if tried:
            run.retries += 1
        return True

    def _all_failed(self, run: Run, last: ProviderError | None) -> GlasskeyError:
        if last is None:
            return RouteError(
                "No healthy route: every route this key may use has an open breaker",
                code="no_healthy_route",
                details={"attempts": [a.__dict__ for a in run.receipt.attempts]},
            )
        if len(run.receipt.attempts) == 1:
            return upstream_error(last)
        summary = "; ".join(
            f"{a.route_id} ({a.provider}) {a.http_status} {a.error_class}" for a in run.receipt.attempts
        )
        return RouteError(
            f"Every route failed: {summary}",
            code="all_routes_failed",
            status_code=502,
            details={"attempts": [a.__dict__ for a in run.receipt.attempts]},
        )

    # -- chat completions -----------------------------------------------------------------

    async def chat(
        self, request_id: str, authorization: str | None, read_body: BodyReader
    ) -> JSONOutcome | StreamOutcome:
        run = self.new_run(request_id, "chat.completions")
        async with self._receipted_on_failure(run):
            body, _bounds, routes = await self.prepare(run, authorization, read_body)
            if body.get("stream") is True:
                return await self._open_stream(run, body, routes)
            return await self._complete(run, body, routes)

    @contextlib.asynccontextmanager
    async def _receipted_on_failure(self, run: Run) -> AsyncIterator[None]:
        """Whatever ends a request early releases its hold and leaves its receipt, then propagates."""
        try:
            yield
        except GlasskeyError as error:
            await self.fail(run, error)
            raise
        except BaseException:
            # A bug or a cancellation: the receipt says the gateway failed, and the error goes on.
            with anyio.CancelScope(shield=True):
                await self.fail(run, RouteError("internal gateway error", code="internal_error", status_code=500))
            raise

    async def _call_routes(
        self, run: Run, routes: list[Route], call: Callable[[Provider, Route], Awaitable[T]]
    ) -> tuple[T, Route]:
        """Try the routes in order; move on only after a retriable failure."""
        last: ProviderError | None = None
        for route in routes:
            if not self._may_try(run, route):
                if run.receipt.attempts[-1].error_class == "retry_budget_exhausted":
                    break
                continue
            self._use_route(run, route)
            began = self.services.monotonic()
            try:
                result = await call(self.services.providers[route.provider], route)
            except ProviderError as error:
                self._attempt_failed(run, route, began, error)
                last = error
                if not error.retriable:
                    break
                continue
            self._attempt_succeeded(run, route, began)
            return result, route
        raise self._all_failed(run, last)

    async def _complete(self, run: Run, body: dict[str, Any], routes: list[Route]) -> JSONOutcome:
        result, route = await self._call_routes(
            run, routes, lambda provider, route: provider.chat(route.target(), self._upstream_body(body, route))
        )
        usage = result.usage
        if usage is None:
            run.receipt.usage_source = "estimated"
            run.notes.append("usage_missing_estimated")
            usage = Usage(chat_input_tokens(body).estimate, estimate_tokens(text_of_body(result.body)))
        else:
            run.receipt.usage_source = "provider_reported"
        charge = await self.settle(run, route, usage, status="succeeded", http_status=200)
        return JSONOutcome(result.body, headers=self.success_headers(run, charge))

    # -- embeddings -----------------------------------------------------------------------

    async def embeddings(self, request_id: str, authorization: str | None, read_body: BodyReader) -> JSONOutcome:
        run = self.new_run(request_id, "embeddings")
        async with self._receipted_on_failure(run):
            body, bounds, routes = await self.prepare(run, authorization, read_body, endpoint="embeddings")
            # Upstreams are asked for floats; the encoding the client wants is applied here, once.
            upstream_body = {k: v for k, v in body.items() if k != "encoding_format"}
            result, route = await self._call_routes(
                run,
                routes,
                lambda provider, route: provider.embed(route.target(), self._upstream_body(upstream_body, route)),
            )
            usage = result.usage
            response = result.body
            if usage is None:
                run.receipt.usage_source = "estimated"
                run.notes.append("usage_missing_estimated")
                usage = Usage(bounds.estimated_input_tokens, 0)
                # The client sees the same estimate the receipt bills.
                response = {
                    **response,
                    "usage": {"prompt_tokens": usage.input_tokens, "total_tokens": usage.input_tokens},
                }
            else:
                run.receipt.usage_source = "provider_reported"
            response = encode_embeddings(response, body.get("encoding_format"))
            charge = await self.settle(run, route, usage, status="succeeded", http_status=200)
            return JSONOutcome(response, headers=self.success_headers(run, charge))

    async def _open_stream(self, run: Run, body: dict[str, Any], routes: list[Route]) -> StreamOutcome:
        """Find a route whose stream yields a first chunk; fallback is allowed only before it."""
        last: ProviderError | None = None
        for route in routes:
            if not self._may_try(run, route):
                if run.receipt.attempts[-1].error_class == "retry_budget_exhausted":
                    break
                continue
            self._use_route(run, route)
            provider = self.services.providers[route.provider]
            began = self.services.monotonic()
            iterator = provider.stream_chat(route.target(), self._upstream_body(body, route))
            try:
                first = await iterator.__anext__()
            except ProviderError as error:
                await _close(iterator)
                self._attempt_failed(run, route, began, error)
                last = error
                if not error.retriable:
                    break
                continue
            except StopAsyncIteration:
                empty = ProviderError(route.provider, 502, "the upstream stream ended before any chunk")
                self._attempt_failed(run, route, began, empty)
                last = empty
                continue
            run.receipt.ttft_ms = self._elapsed_ms(run)
            relay = partial(self._relay, run, route, began, body, iterator, first)
            return StreamOutcome(relay=relay, headers=self.stream_headers(run))
        raise self._all_failed(run, last)

    async def _relay(
        self,
        run: Run,
        route: Route,
        began: float,
        body: dict[str, Any],
        iterator: AsyncIterator[dict[str, Any]],
        first: dict[str, Any],
        emit: Emit,
    ) -> None:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        usage: Usage | None = None
        text_parts: list[str] = []
        finished = False
        relayed = False  # the upstream's stream reached its end and all of it went to the client
        failure: GlasskeyError | None = None
        try:
            chunk: dict[str, Any] | None = first
            while chunk is not None:
                reported = chunk.get("usage")
                if reported:
                    usage = usage_from_openai(reported)
                for choice in chunk.get("choices") or ():
                    text_parts.append(text_of_delta(choice.get("delta") or {}))
                    finished = finished or choice.get("finish_reason") is not None
                if include_usage or not (reported and not chunk.get("choices")):
                    if not include_usage:
                        chunk.pop("usage", None)
                    await emit(sse(chunk))
                chunk = await anext(iterator, None)
            relayed = True
        except ProviderError as error:
            self._attempt_failed(run, route, began, error)
            failure = upstream_error(error)
            failure.message = f"The upstream stream broke mid-answer: {failure.message}"
            await emit(sse({"error": _in_band(failure, run.receipt.request_id)}))
        except anyio.get_cancelled_exc_class():
            run.notes.append("client_disconnected")
            raise
        except Exception:
            # A bug while relaying: the request failed, and the receipt must say so.
            failure = RouteError("internal gateway error while streaming", code="internal_error", status_code=500)
            raise
        finally:
            with anyio.CancelScope(shield=True):
                if "client_disconnected" not in run.notes:
                    await before_wait()  # what was relayed goes out before the settlement's commit
                await _close(iterator)
                if failure is None:
                    self._attempt_succeeded(run, route, began)
                text = "".join(text_parts)
                if not text and (failure is not None or not finished):
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
                    usage = Usage(chat_input_tokens(body).estimate, estimate_tokens(text))
                if failure is not None:
                    await self.settle(
                        run, route, usage, status="failed", http_status=failure.status_code, error=failure
                    )
                elif "client_disconnected" in run.notes:
                    await self.settle(run, route, usage, status="failed", http_status=499, error=_disconnected())
                else:
                    await self.settle(run, route, usage, status="succeeded", http_status=200)
                    if relayed:
                        # The end of the stream is the client's success: it leaves only once the
                        # charge and the receipt are committed, as a JSON answer does.
                        await emit(SSE_DONE)

    # -- settlement -----------------------------------------------------------------------

    async def settle(
        self,
        run: Run,
        route: Route | None,
        usage: Usage,
        *,
        status: str,
        http_status: int,
        error: GlasskeyError | None = None,
    ) -> int:
        """Post the charge for ``usage`` (capped by the hold), release the rest, write the receipt."""
        receipt = run.receipt
        usage = run.bounded(usage)
        receipt.input_tokens = usage.input_tokens
        receipt.output_tokens = usage.output_tokens
        receipt.cached_tokens = usage.cached_tokens
        charge = charge_for(usage, route.prices) if route is not None else 0
        hold = run.hold
        if hold is not None and charge > hold.amount_micros:
            run.notes.append("charge_capped_at_hold")
            charge = hold.amount_micros
        if hold is None:
            charge = 0
        receipt.charge_micros = charge
        receipt.status = status
        receipt.http_status = http_status
        if error is not None:
            receipt.error_source = error.source
            receipt.error_code = error.code
            receipt.error_message = error.message[:2000]
        receipt.latency_ms = self._elapsed_ms(run)
        receipt.flags = list(dict.fromkeys(run.notes))
        now = self.services.clock()

        def work(conn: Connection) -> Later[int]:
            settling = send_settlement(conn, run, hold, receipt.charge_micros, now) if hold is not None else None

            def settled() -> int:
                final = settling() if settling is not None else 0
                receipt.charge_micros = final
                receipt.flags = list(dict.fromkeys(run.notes))
                write_receipt(conn, receipt)
                return final

            return Later(settled)

        charged = await self._write(work)
        run.finished = True
        metrics = self.services.metrics
        metrics.request(receipt.endpoint, receipt.http_status, receipt.error_source)
        if receipt.org_id and receipt.wallet_kind:
            metrics.charge(receipt.org_id, receipt.wallet_kind, charged)
        self.services.retry_budget.end_request()
        for _ in range(run.retries):
            self.services.retry_budget.end_retry()
        return charged

    async def fail(self, run: Run, error: GlasskeyError) -> None:
        """A request that ends in an error: release any hold and leave the receipt."""
        if run.finished:
            return
        run.receipt.usage_source = "none"
        await self.settle(run, None, Usage(0, 0), status="failed", http_status=error.status_code, error=error)

    def success_headers(self, run: Run, charge: int) -> dict[str, str]:
        return {**self.stream_headers(run), "x-glasskey-charge-micros": str(charge)}

    def stream_headers(self, run: Run) -> dict[str, str]:
        receipt = run.receipt
        return {
            "x-glasskey-route": receipt.route_id or "",
            "x-glasskey-settlement": receipt.settlement or "",
            "x-glasskey-provider": receipt.provider or "",
            "x-glasskey-upstream-model": receipt.upstream_model or "",
            "x-glasskey-hold-micros": str(receipt.hold_micros),
        }


def _in_band(error: GlasskeyError, request_id: str) -> dict[str, Any]:
    body: dict[str, Any] = error_body(error, request_id)["error"]
    return body


async def _close(iterator: AsyncIterator[Any]) -> None:
    """Close an upstream stream so its connection is released (generators have ``aclose``)."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


def _disconnected() -> GlasskeyError:
    return ClientError("The client closed the connection before the stream ended", code="client_disconnected")


__all__ = ["Hold", "Lifecycle", "Run"]
