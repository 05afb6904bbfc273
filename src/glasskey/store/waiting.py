"""Waiting for the writer's answer through a cancellation: a request must know the hold it took."""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

from glasskey.store.commands import Outcome

T = TypeVar("T")


class Answer(Generic[T]):
    """The writer's answer to one write, awaited on the loop of the task that submitted it.

    The outcome is kept here, not in a future: ``wake`` only wakes the waiting task. A
    cancellation of that task cancels ``wake`` and leaves the outcome to come, so the wait goes on
    with a fresh ``wake``. Everything here runs on the loop's thread: the writer thread reaches it
    through ``call_soon_threadsafe(deliver)`` only (SQLite's commit, on the loop, calls ``deliver``).

    ``asyncio.shield`` around a future holding the outcome did the same with an outer future and
    two done-callbacks per wait, about 5 µs a request on the event loop (two waits). anyio's
    ``CancelScope(shield=True)`` would not do: a plain ``Task.cancel`` still cancels the awaited
    future inside a shielded scope (checked on anyio 4), and uvicorn cancels request tasks that way
    at shutdown.
    """

    __slots__ = ("loop", "outcome", "wake")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.outcome: Outcome | None = None
        self.wake: asyncio.Future[None] = loop.create_future()

    def deliver(self, outcome: Outcome) -> None:
        """On the loop's thread: keep ``outcome`` and wake the waiting task, if it still waits."""
        self.outcome = outcome
        if not self.wake.done():  # cancelled with its task, which then waits on a fresh one
            self.wake.set_result(None)

    async def wait_out(self) -> T:
        """The outcome, even if the waiting task is cancelled meanwhile; the cancellation is then
        asked again, with its message, and arrives at the task's next await."""
        try:
            await self.wake
        except asyncio.CancelledError as cancelled:
            await self._outlast(cancelled)
        assert self.outcome is not None  # woken by ``deliver`` only, or waited for in ``_outlast``
        result, error = self.outcome
        if error is not None:
            raise error
        return result  # type: ignore[no-any-return]

    async def _outlast(self, cancellation: asyncio.CancelledError) -> None:
        task = asyncio.current_task()
        if task is None:
            raise cancellation
        task.uncancel()  # asked again once, below: the count of cancellations stays as it was
        while self.outcome is None:
            if self.wake.done():  # cancelled with the task
                self.wake = self.loop.create_future()
            try:
                await self.wake
            except asyncio.CancelledError as again:  # anyio's scope asks again at every await
                cancellation = again
                task.uncancel()
        task.cancel(cancellation.args[0] if cancellation.args else None)
