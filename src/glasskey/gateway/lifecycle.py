"""The life of one request: authenticate → select → hold → call → settle → respond.

Every request that reaches the lifecycle leaves exactly one receipt, whatever happens. The key is
checked before anything else, so every later failure (a bad body, an unknown model, an empty
wallet) is the key's, on its receipt. The hold is taken before any upstream call (``accounting.Hold``);
the call walks the key's routes (``fallback``); the settlement posts the actual charge, never
above the hold, with the receipt in the same transaction (``accounting.Settlement``). A stream
settles at the end of its relay (``relay``).
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

from glasskey.errors import APIKeyError, GlasskeyError, RouteError
from glasskey.gateway.accounting import Hold, Settlement
from glasskey.gateway.embeddings import encode_embeddings
from glasskey.gateway.fallback import Fallback, open_stream
from glasskey.gateway.outcomes import JSONOutcome, StreamOutcome
from glasskey.gateway.relay import Relay
from glasskey.gateway.requests import check_chat_body, check_embeddings_body, parse_json_object
from glasskey.gateway.run import Run
from glasskey.gateway.usage import estimate_tokens, text_of_body
from glasskey.keys import secret as key_secret
from glasskey.keys.service import KeyRecord, bearer_token, find_by_public_id, verify_parsed
from glasskey.ledger import SYSTEM_REVENUE
from glasskey.orgs.service import wallet_account_id
from glasskey.pricing.catalog import get_model
from glasskey.pricing.metering import charge_for
from glasskey.pricing.quote import Bounds, request_bounds
from glasskey.pricing.tokens import chat_input_tokens
from glasskey.providers.base import Usage
from glasskey.receipts.records import Receipt
from glasskey.routing.routes import Route, candidates
from glasskey.routing.selection import selection_from
from glasskey.services import Services
from glasskey.store.outage import gateway_failure

log = logging.getLogger("glasskey.gateway")
T = TypeVar("T")
BodyReader = Callable[[], Awaitable[bytes]]


class Lifecycle:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.fallback = Fallback(services)

    # -- the two endpoints ------------------------------------------------------------------

    async def chat(
        self, request_id: str, authorization: str | None, read_body: BodyReader, *, endpoint: str = "chat.completions"
    ) -> JSONOutcome | StreamOutcome:
        run = self.new_run(request_id, endpoint)
        async with self._receipted_on_failure(run):
            body, _, routes = await self.prepare(run, authorization, read_body)
            if body.get("stream") is True:
                return await self._stream(run, body, routes)
            result, route, began = await self.fallback.first_success(
                run, routes, lambda provider, route: provider.chat(route.target(), _upstream_body(body, route))
            )
            self.fallback.succeeded(run, route, began)
            usage = result.usage
            if usage is None:
                usage = self._estimated(
                    run, Usage(chat_input_tokens(body).estimate, estimate_tokens(text_of_body(result.body)))
                )
            else:
                run.receipt.usage_source = "provider_reported"
            charge = await self.settle(run, route, usage, status="succeeded", http_status=200)
            return JSONOutcome(result.body, headers=run.headers(charge))

    async def embeddings(
        self, request_id: str, authorization: str | None, read_body: BodyReader, *, endpoint: str = "embeddings"
    ) -> JSONOutcome:
        run = self.new_run(request_id, endpoint)
        async with self._receipted_on_failure(run):
            body, bounds, routes = await self.prepare(run, authorization, read_body, kind="embedding")
            # Upstreams are asked for floats; the encoding the client wants is applied here, once.
            upstream = {k: v for k, v in body.items() if k != "encoding_format"}
            result, route, began = await self.fallback.first_success(
                run, routes, lambda provider, route: provider.embed(route.target(), _upstream_body(upstream, route))
            )
            self.fallback.succeeded(run, route, began)
            usage, response = result.usage, result.body
            if usage is None:
                usage = self._estimated(run, Usage(bounds.estimated_input_tokens, 0))
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
        self, run: Run, authorization: str | None, read_body: BodyReader, *, kind: str = "chat"
    ) -> tuple[dict[str, Any], Bounds, list[Route]]:
        """Everything before the upstream call: authenticate, limit, parse, select, quote and hold."""
        key = await self.authenticate(run, authorization)
        await self.services.rate_limiter.acquire(key.id, key.policy.rpm_limit)
        body = parse_json_object(await read_body())
        if isinstance(body.get("model"), str):
            run.receipt.requested_model = body["model"][:200]
        run.receipt.stream = body.get("stream") is True
        if kind == "embedding":
            check_embeddings_body(body)
        else:
            check_chat_body(body)
        model_name = str(body["model"])
        cache = self.services.cache  # an unknown model is 404 for every key; selection_from checks it is allowed
        model = await cache.get(("model", model_name), partial(get_model, name=model_name))
        settlement = key.policy.settlement
        routes = await cache.get(
            ("routes", model_name, settlement), partial(candidates, model=model_name, settlement=settlement)
        )
        selection = selection_from(model, routes, key, kind=kind, board=self.services.health)
        bounds = request_bounds(selection, body, endpoint="embeddings" if kind == "embedding" else "chat")
        run.max_input_tokens = bounds.max_input_tokens
        run.max_output_tokens = bounds.max_output_tokens
        run.use_route(selection.usable[0])
        await self._hold(run, key, model.name, bounds.max_charge_micros)
        return body, bounds, selection.usable

    async def authenticate(self, run: Run, authorization: str | None) -> KeyRecord:
        """The key behind the request. A refused key that names a known public id is still named on
        the receipt (key and org), so its holder finds the failure among their own; the caller
        learns nothing more than 401."""
        key = await self._verified_key(authorization, run)
        self._attribute(run, key)
        return key

    async def key_of(self, authorization: str | None) -> KeyRecord:
        """The key behind a request that leaves no receipt (metadata endpoints)."""
        return await self._verified_key(authorization, None)

    async def _verified_key(self, authorization: str | None, run: Run | None) -> KeyRecord:
        # The record comes from the one-second cache; the secret is checked every time.
        parsed = key_secret.parse(bearer_token(authorization))
        record = None
        if parsed is not None:
            public_id = parsed[0]
            if run is not None:
                run.receipt.key_public_id = public_id
            record = await self.services.cache.get(("key", public_id), partial(find_by_public_id, public_id=public_id))
        try:
            return verify_parsed(parsed, record, pepper=self.services.pepper, now=self.services.clock())
        except APIKeyError:
            if run is not None and record is not None:
                self._attribute(run, record)
            raise

    def _attribute(self, run: Run, key: KeyRecord) -> None:
        receipt = run.receipt
        receipt.key_id = key.id
        receipt.org_id = key.org_id
        receipt.settlement = key.policy.settlement
        receipt.wallet_kind = key.policy.wallet_kind

    async def _hold(self, run: Run, key: KeyRecord, model_name: str, amount_micros: int) -> None:
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
        )
        # Answered once its floor and budget checks are done, not after its commit: nothing is
        # acknowledged to the client on the strength of a hold alone.
        run.hold = await self.services.writer.submit(hold, durable=False)
        run.receipt.hold_micros = amount_micros
        run.receipt.transfer_id = run.hold.transfer_id

    async def _stream(self, run: Run, body: dict[str, Any], routes: list[Route]) -> StreamOutcome:
        """Find a route whose stream yields a first chunk; the relay sends the rest and settles."""
        (iterator, first), route, began = await self.fallback.first_success(
            run, routes, lambda provider, route: open_stream(provider, route, _upstream_body(body, route))
        )
        run.receipt.ttft_ms = int((self.services.monotonic() - run.started) * 1000)
        relay = Relay(run, route, began, body, iterator, first, self.fallback, self.settle)
        return StreamOutcome(relay=relay, headers=run.headers())

    def _estimated(self, run: Run, usage: Usage) -> Usage:
        run.receipt.usage_source = "estimated"
        run.notes.append("usage_missing_estimated")
        return usage

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
        receipt, hold = run.receipt, run.hold
        usage = run.bounded(usage)
        receipt.input_tokens, receipt.output_tokens = usage.input_tokens, usage.output_tokens
        receipt.cached_tokens = usage.cached_tokens
        charge = charge_for(usage, route.prices) if route is not None and hold is not None else 0
        if hold is not None and charge > hold.amount_micros:
            run.notes.append("charge_capped_at_hold")
            charge = hold.amount_micros
        receipt.status, receipt.http_status = status, http_status
        if error is not None:
            receipt.error_source, receipt.error_code = error.source, error.code
            receipt.error_message = error.message[:2000]
        receipt.latency_ms = int((self.services.monotonic() - run.started) * 1000)
        receipt.flags = list(dict.fromkeys(run.notes))
        settlement = Settlement(hold, charge, receipt.row(), self.services.clock())
        settled = await self.services.writer.submit(settlement)
        receipt.charge_micros, receipt.transfer_id = settled.charge_micros, settled.transfer_id
        run.notes += settled.flags
        receipt.flags = list(dict.fromkeys(run.notes))
        run.finished = True
        self._count(receipt, run.retries)
        return settled.charge_micros

    def _count(self, receipt: Receipt, retries: int) -> None:
        metrics = self.services.metrics
        metrics.request(receipt.endpoint, receipt.http_status, receipt.error_source)
        if receipt.org_id and receipt.wallet_kind:
            metrics.charge(receipt.org_id, receipt.wallet_kind, receipt.charge_micros)
        self.services.retry_budget.end_request()
        for _ in range(retries):
            self.services.retry_budget.end_retry()

    async def fail(self, run: Run, error: GlasskeyError) -> None:
        """A request that ends in an error: release any hold and leave the receipt."""
        if run.finished:
            return
        run.receipt.usage_source = "none"
        await self.settle(run, None, Usage(0, 0), status="failed", http_status=error.status_code, error=error)

    @contextlib.asynccontextmanager
    async def _receipted_on_failure(self, run: Run) -> AsyncIterator[None]:
        """Whatever ends a request early releases its hold and leaves its receipt, then propagates."""
        try:
            yield
        except GlasskeyError as error:
            try:
                await self.fail(run, error)
            except Exception as failed:  # the receipt could not be written: an outage, or a bug
                outage = gateway_failure(failed)
                if outage is None:
                    raise
                raise outage from failed
            raise
        except BaseException as error:
            outage = gateway_failure(error)
            if outage is None:
                # A bug or a cancellation: the receipt says the gateway failed, and the error goes on.
                with anyio.CancelScope(shield=True):
                    await self.fail(run, RouteError("internal gateway error", code="internal_error", status_code=500))
                raise
            # The database or Redis is down: a 503 naming the gateway. Its receipt is written if the
            # database can take it; if not, the request had nothing posted to explain either.
            log.warning("request %s failed on an outage: %r", run.receipt.request_id, error)
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await self.fail(run, outage)
            raise outage from error

    async def read(self, fn: Callable[[Connection], T]) -> T:
        """``fn`` on a read connection, in a worker thread so the event loop keeps serving."""

        def work() -> T:
            with self.services.db.read() as conn:
                return fn(conn)

        return await anyio.to_thread.run_sync(work)


def _upstream_body(body: dict[str, Any], route: Route) -> dict[str, Any]:
    return {**body, "model": route.upstream_model}


__all__ = ["BodyReader", "Lifecycle", "Run"]
