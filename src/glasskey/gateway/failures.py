"""Whatever ends a request early releases its hold and leaves its receipt, then propagates.

The lifecycle runs each request inside ``receipted_on_failure``: an expected refusal (a
``GlasskeyError``) is settled as that error; an outage of the database or Redis becomes a 503
naming the gateway (``store.outage``); anything else — a bug, a cancellation — is receipted as the
gateway's internal error and goes on. ``fail`` is the lifecycle's own (release the hold, write the
receipt), passed in so this module needs nothing else of it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio

from glasskey.errors import GlasskeyError, RouteError
from glasskey.gateway.run import Run
from glasskey.store.outage import gateway_failure

log = logging.getLogger("glasskey.gateway")
Fail = Callable[[Run, GlasskeyError], Awaitable[None]]


@contextlib.asynccontextmanager
async def receipted_on_failure(run: Run, fail: Fail) -> AsyncIterator[None]:
    try:
        yield
    except GlasskeyError as error:
        try:
            await fail(run, error)
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
                await fail(run, RouteError("internal gateway error", code="internal_error", status_code=500))
            raise
        # The database or Redis is down: a 503 naming the gateway. Its receipt is written if the
        # database can take it; if not, the request had nothing posted to explain either.
        log.warning("request %s failed on an outage: %r", run.receipt.request_id, error)
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await fail(run, outage)
        raise outage from error
