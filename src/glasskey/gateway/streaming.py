"""An ASGI response for streams that always lets the lifecycle settle, even if the client leaves.

Starlette's ``StreamingResponse`` iterates a generator; when the client disconnects the
generator may be abandoned at a ``yield`` and finalised later. Here the lifecycle's ``relay``
is a plain coroutine that receives an ``emit`` function, and a disconnect cancels it, so its
own ``finally`` (shielded) settles the hold and writes the receipt at once.

What the relay emits after its first event is held and sent when the relay calls ``flush``, which it
does whenever its stream is about to wait (``providers.sse.PAUSE``): the events of one upstream
read leave in one write.
"""

from __future__ import annotations

import anyio
from starlette.types import Receive, Scope, Send

from glasskey.gateway.outcomes import Relay

SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}


class RelayResponse:
    def __init__(self, relay: Relay, headers: dict[str, str]) -> None:
        self.relay = relay
        self.headers = {**SSE_HEADERS, **headers}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()]
        await send({"type": "http.response.start", "status": 200, "headers": raw_headers})
        disconnected = False
        pending: list[bytes] = []
        first = True

        async def emit(data: bytes) -> None:
            nonlocal first
            if first:  # the first event leaves at once: the time to first token is what clients feel
                first = False
                await send({"type": "http.response.body", "body": data, "more_body": True})
            else:
                pending.append(data)

        async def flush() -> None:
            if pending:
                body = b"".join(pending)
                pending.clear()
                await send({"type": "http.response.body", "body": body, "more_body": True})

        async with anyio.create_task_group() as group:

            async def watch_disconnect() -> None:
                nonlocal disconnected
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        disconnected = True
                        group.cancel_scope.cancel()
                        return

            group.start_soon(watch_disconnect)
            await self.relay(emit, flush)
            group.cancel_scope.cancel()
        if not disconnected:
            await send({"type": "http.response.body", "body": b"".join(pending), "more_body": False})
