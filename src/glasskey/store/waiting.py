"""Waiting for the writer's answer through a cancellation: a request must know the hold it took."""

from __future__ import annotations

import asyncio
from typing import TypeVar

T = TypeVar("T")


async def wait_out(future: asyncio.Future[T]) -> T:
    """What ``future`` resolves to, even if the waiting task is cancelled meanwhile; the cancellation
    is then asked again, with its message, and arrives at the task's next await.

    anyio's ``CancelScope(shield=True)`` would do this for anyio's own cancellations only: a plain
    ``Task.cancel`` still cancels the awaited future inside a shielded scope (checked on anyio 4),
    and uvicorn cancels request tasks that way at shutdown. ``asyncio.shield`` keeps the writer's
    future alive whatever happens to the waiting task.
    """
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError as cancelled:
        cancellation = cancelled
    task = asyncio.current_task()
    if task is None:
        raise cancellation
    task.uncancel()  # asked again once, below: the count of cancellations stays as it was
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError as again:  # anyio's scope asks again at every await
            cancellation = again
            task.uncancel()
        except Exception:  # an error is the outcome, raised below
            break
    task.cancel(cancellation.args[0] if cancellation.args else None)
    return future.result()
