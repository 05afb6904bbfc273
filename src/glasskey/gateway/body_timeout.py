"""The bound on how long a client may take to send its request body (issue 18 #9).

A client that sends its headers and then trickles (or stalls) its body would otherwise hold its
connection, and the request's place in the lifecycle, for ever. Reading the whole body is given
``GLASSKEY_BODY_READ_TIMEOUT_SECONDS`` (every wait for the next chunk is inside it); past that the
request is refused 408 ``source: client`` (``body_read_timeout``) and, once past the key, leaves a
receipt like any refused body. The headers before the body are the server's to bound, not this.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from glasskey.errors import ClientError


def body_read_timeout(seconds: float) -> ClientError:
    return ClientError(
        f"The request body did not arrive within {seconds:g} seconds",
        code="body_read_timeout",
        status_code=408,
        # The rest of the body may still come: the connection cannot carry another request.
        headers={"connection": "close"},
    )


async def read_within(read: Callable[[], Awaitable[bytes]], seconds: float) -> bytes:
    """``read()``, or a 408 ``body_read_timeout`` once ``seconds`` have passed.

    ``asyncio.timeout`` rather than anyio's ``fail_after``: a loop timer, where anyio's cancel scope
    costs more per request than the read it bounds (``bench.accounting``).
    """
    try:
        async with asyncio.timeout(seconds):
            return await read()
    except TimeoutError:
        raise body_read_timeout(seconds) from None
