"""The life of one request: authenticate → select → hold → call → settle → respond.

Every request that reaches the lifecycle leaves exactly one receipt, whatever happens. The key is
checked before anything else, so every later failure (a bad body, an unknown model, an empty
wallet) is the key's, on its receipt. The hold is taken before any upstream call (``accounting.Hold``);
the call walks the key's routes (``fallback``); the settlement posts the actual charge, never
above the hold, with the receipt in the same transaction (``accounting.Settlement``). A stream
settles at the end of its relay (``relay``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from sqlalchemy import Connection

from glasskey.errors import GlasskeyError
from glasskey.gateway.accounting import Hold, Precondition, Settlement
from glasskey.gateway.anthropic_passthrough import Passthrough, answer_shape
from glasskey.gateway.authentication import Authentication
from glasskey.gateway.body_timeout import read_within
from glasskey.gateway.embeddings import encode_embeddings
from glasskey.gateway.failures import receipted_on_failure
from glasskey.gateway.fallback import Fallback, open_stream
from glasskey.gateway.outcomes import JSONOutcome, StreamOutcome
from glasskey.gateway.relay import ChunkTally, Relay, Tally
from glasskey.gateway.requests import check_chat_body, check_embeddings_body, parse_json_object
from glasskey.gateway.run import Run
from glasskey.gateway.usage import estimate_tokens, text_of_body
from glasskey.keys.service import KeyRecord
from glasskey.ledger import SYSTEM_REVENUE
from glasskey.orgs.service import wallet_account_id
from glasskey.pricing.catalog import get_model
from glasskey.pricing.quote import Bounds, request_bounds
from glasskey.pricing.tokens import chat_input_tokens
from glasskey.providers.base import ChatResult, Provider, Usage
from glasskey.receipts.records import Receipt
from glasskey.routing.routes import Route, candidates
from glasskey.routing.selection import selection_from
from glasskey.services import Services
from glasskey.store.commands import Write

log = logging.getLogger("glasskey.gateway")
T = TypeVar("T")
BodyReader = Callable[[], Awaitable[bytes]]


class Lifecycle:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.authentication = Authentication(services)
        self.fallback = Fallback(services)

    # -- the two endpoints ------------------------------------------------------------------

    async def chat(
        self,
        request_id: str,
        authorization: str | None,
        read_body: BodyReader,
        *,
        endpoint: str = "chat.completions",
        client_address: str | None = None,
        acting_for: str | None = None,
        keep_answer: bool = False,
        passthrough: Passthrough | None = None,
        hold_precondition: Precondition | None = None,
    ) -> JSONOutcome | StreamOutcome:
        """One chat request. ``acting_for`` (a key id, in place of ``authorization``) is for glasskey's
        own callers acting for a key whose secret they never hold (the research runner); the key is
        checked all the same. ``keep_answer`` keeps the answer with its charge (``kept_answers``). With
        ``passthrough`` (``/v1/messages``), ``read_body`` gives the body to quote and hold on, Anthropic
        routes get the caller's own body and the others its translation. ``hold_precondition`` is checked
        in the hold's own transaction (the research runner's: the job is still this process's)."""
        run = self.new_run(request_id, endpoint)
        async with receipted_on_failure(run, self.fail):
            body, _, routes = await self.prepare(
                run,
                authorization,
                read_body,
                client_address=client_address,
                acting_for=acting_for,
                hold_precondition=hold_precondition,
            )
            if passthrough is not None:
                routes = passthrough.servable(routes, run.receipt.attempts)
            if body.get("stream") is True:
                return await self._stream(run, body, routes, passthrough)
            attempt: Callable[[Provider, Route], Awaitable[ChatResult]] = (
                partial(passthrough.attempt, run)
                if passthrough is not None
                else lambda provider, route: provider.chat(route.target(), run.body_for(route, body))
            )
            result, route, began = await self.fallback.first_success(run, routes, attempt)
            self.fallback.succeeded(run, route, began)
            usage = result.usage
            if usage is None:
                usage = run.estimated(
                    Usage(chat_input_tokens(body).estimate, estimate_tokens(text_of_body(result.body)))
                )
            else:
                run.receipt.usage_source = "provider_reported"
            kept = result.body if keep_answer else None
            charge = await self.settle(run, route, usage, status="succeeded", http_status=200, answer=kept)
            return JSONOutcome(result.body, headers=run.headers(charge), shape=answer_shape(passthrough, route))

    async def embeddings(
        self,
        request_id: str,
        authorization: str | None,
        read_body: BodyReader,
        *,
        endpoint: str = "embeddings",
        client_address: str | None = None,
    ) -> JSONOutcome:
        run = self.new_run(request_id, endpoint)
        async with receipted_on_failure(run, self.fail):
            body, bounds, routes = await self.prepare(
                run, authorization, read_body, kind="embedding", client_address=client_address
            )
            # Upstreams are asked for floats; the encoding the client wants is applied here, once.
            upstream = {k: v for k, v in body.items() if k != "encoding_format"}
            result, route, began = await self.fallback.first_success(
                run,
                routes,
                lambda provider, route: provider.embed(route.target(), run.body_for(route, upstream)),
            )
            self.fallback.succeeded(run, route, began)
            usage, response = result.usage, result.body
            if usage is None:
                usage = run.estimated(Usage(bounds.estimated_input_tokens, 0))
                # The client sees the same estimate the receipt bills.
                response = {
                    **response,
                    "usage": {"prompt_tokens": usage.input_tokens, "total_tokens": usage.input_tokens},
                }
            else:
                run.receipt.usage_source = "provider_reported"
            response = encode_embeddings(response, body.get("encoding_format"))
            charge = await self.settle(run, route, usage, status="succeeded", http_status=200)
            return JSONOutcome(response, headers=run.headers(charge))

    # -- the steps --------------------------------------------------------------------------

    def new_run(self, request_id: str, endpoint: str) -> Run:
        receipt = Receipt(request_id=request_id, endpoint=endpoint, created_at=self.services.clock())
        self.services.retry_budget.start_request()
        return Run(receipt=receipt, started=self.services.monotonic())

    async def prepare(
        self,
        run: Run,
        authorization: str | None,
        read_body: BodyReader,
        *,
        kind: str = "chat",
        client_address: str | None = None,
        acting_for: str | None = None,
        hold_precondition: Precondition | None = None,
    ) -> tuple[dict[str, Any], Bounds, list[Route]]:
        """Everything before the upstream call: authenticate, limit, parse, select, quote and hold."""
        if acting_for is not None:
            key = await self.authentication.of_key_id(run, acting_for)
        else:
            key = await self.authentication.of_request(run, authorization, client_address)
        await self.services.rate_limiter.acquire(key.id, key.policy.rpm_limit)
        run.strict_params = key.policy.strict_params
        body = parse_json_object(await read_within(read_body, self.services.settings.body_read_timeout_seconds))
        if isinstance(body.get("model"), str):
            run.receipt.requested_model = body["model"][:200]
        run.receipt.stream = body.get("stream") is True
        (check_embeddings_body if kind == "embedding" else check_chat_body)(body)
        model_name = str(body["model"])
        cache = self.services.cache  # an unknown model is 404 for every key; selection_from checks it is allowed
        model = await cache.get(("model", model_name), partial(get_model, name=model_name))
        settlement = key.policy.settlement
        routes = await cache.get(
            ("routes", model_name, settlement), partial(candidates, model=model_name, settlement=settlement)
        )
        selection = selection_from(model, routes, key, kind=kind, board=self.services.health)
        bounds = request_bounds(selection, body, endpoint="embeddings" if kind == "embedding" else "chat")
        run.max_input_tokens, run.max_output_tokens = bounds.max_input_tokens, bounds.max_output_tokens
        run.use_route(selection.usable[0])
        await self._hold(run, key, model.name, bounds.max_charge_micros, hold_precondition)
        return body, bounds, selection.usable

    async def key_of(self, authorization: str | None) -> KeyRecord:
        """The key behind a request that leaves no receipt (metadata endpoints)."""
        return await self.authentication.key_of(authorization)

    async def _hold(
        self, run: Run, key: KeyRecord, model_name: str, amount_micros: int, precondition: Precondition | None = None
    ) -> None:
        kind = key.policy.wallet_kind
        wallet_id = await self.services.cache.get(
            ("wallet", key.org_id, kind), partial(wallet_account_id, org_id=key.org_id, kind=kind)
        )
        now = self.services.clock()
        hold = Hold(
            key_id=key.id,
            policy=key.policy,
            wallet_kind=kind,
            wallet_account_id=wallet_id,
            revenue_account_id=SYSTEM_REVENUE[key.policy.settlement],
            amount_micros=amount_micros,
            now=now,
            expires_at=now + timedelta(seconds=self.services.settings.hold_ttl_seconds),
            request_id=run.receipt.request_id,
            memo=f"hold for {model_name}",
            instance_id=self.services.instance_id,
            precondition=precondition,
        )
        # A hold is answered once its checks are done, before its commit: nothing reaches a client
        # before its settlement commits. But a stream's first chunks do, so a stream's hold commits
        # first: a process killed mid-stream leaves it for an `interrupted` receipt (bench.kill_streams
        # found 49 streams of one seed cut without a receipt when it did not).
        run.hold = await self._write(hold, durable=run.receipt.stream)
        run.receipt.hold_micros = amount_micros
        run.receipt.transfer_id = run.hold.transfer_id

    async def _stream(
        self, run: Run, body: dict[str, Any], routes: list[Route], passthrough: Passthrough | None
    ) -> StreamOutcome:
        """Find a route whose stream yields a first chunk; the relay sends the rest and settles."""

        async def start(provider: Provider, route: Route) -> tuple[AsyncIterator[Any], Any, Tally]:
            sent = run.body_for(route, body)
            return (*await open_stream(provider, route, sent), ChunkTally(sent))

        opener = start if passthrough is None else partial(passthrough.open_attempt, run)
        (iterator, first, tally), route, began = await self.fallback.first_success(run, routes, opener)
        run.receipt.ttft_ms = int((self.services.monotonic() - run.started) * 1000)
        relay = Relay(run, route, began, body, iterator, first, self.fallback, self.settle, tally)
        return StreamOutcome(relay=relay, headers=run.headers(), shape=answer_shape(passthrough, route))

    async def _write(self, command: Write[T], *, durable: bool = True) -> T:
        writer = self.services.writer
        if self.services.retry_budget.in_flight <= 1:  # the only request the process is serving
            return await writer.submit_alone(command, durable=durable)
        return await writer.submit(command, durable=durable)

    async def settle(
        self,
        run: Run,
        route: Route | None,
        usage: Usage,
        *,
        status: str,
        http_status: int,
        error: GlasskeyError | None = None,
        answer: dict[str, Any] | None = None,
    ) -> int:
        """Post the charge for ``usage`` (capped by the hold), release the rest, write the receipt
        (and ``answer``, when given, in the same transaction: ``kept_answers``)."""
        receipt = run.receipt
        latency_ms = int((self.services.monotonic() - run.started) * 1000)
        charge = run.end(route, usage, status=status, http_status=http_status, error=error, latency_ms=latency_ms)
        settlement = Settlement(run.hold, charge, receipt.row(), self.services.clock(), answer=answer)
        settled = await self._write(settlement)
        receipt.charge_micros, receipt.transfer_id = settled.charge_micros, settled.transfer_id
        run.notes += settled.flags
        receipt.flags = list(dict.fromkeys(run.notes))
        run.finished = True
        self._count(receipt, run.retries)
        return settled.charge_micros

    def _count(self, receipt: Receipt, retries: int) -> None:
        self.services.metrics.request(receipt.endpoint, receipt.http_status, receipt.error_source)
        if receipt.org_id and receipt.wallet_kind:
            self.services.metrics.charge(receipt.org_id, receipt.wallet_kind, receipt.charge_micros)
        self.services.retry_budget.end_request(retries)

    async def fail(self, run: Run, error: GlasskeyError) -> None:
        """A request that ends in an error: release any hold and leave the receipt."""
        if run.finished:
            return
        if not run.receipted:
            # A failed authentication past its receipt threshold: counted in auth_failures, and
            # in the metrics, but it writes nothing more (there is no hold before a key).
            run.finished = True
            run.receipt.http_status, run.receipt.error_source = error.status_code, error.source
            self._count(run.receipt, run.retries)
            return
        run.receipt.usage_source = "none"
        await self.settle(run, None, Usage(0, 0), status="failed", http_status=error.status_code, error=error)

    async def read(self, fn: Callable[[Connection], T]) -> T:
        """``fn`` on a read connection, in a worker thread so the event loop keeps serving."""
        return await anyio.to_thread.run_sync(self.services.db.read_with, fn)


__all__ = ["BodyReader", "Lifecycle", "Run"]
