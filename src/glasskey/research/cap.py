"""The hard cap of a research job, and the ways a step ends early.

``Budget`` is the job's money as the cap sees it: what its calls were charged so far plus the
maximum of every call in flight. A call reserves its quote's maximum before it starts and is
refused (``Capped``) if that could take the job past the confirmed maximum; when it ends, the
reservation is replaced by what the gateway actually charged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio

from glasskey.errors import GlasskeyError


class Capped(Exception):
    """The next call would take the job past its confirmed maximum."""


class StepFailed(Exception):
    """A step could not finish; the message says which call and why."""


class CancelRequested(Exception):
    """The job's cancel flag is set (by this process or another): no further call starts."""


class Superseded(Exception):
    """Another gateway process claimed the job (this one was taken for dead): this one stops."""


@dataclass
class Budget:
    """The job's money as the cap sees it: charged so far plus the maxima of calls in flight."""

    confirmed_max_micros: int
    spent_micros: int
    reserved_micros: int = 0
    lock: anyio.Lock = field(default_factory=anyio.Lock)

    async def reserve(self, maximum: int, label: str) -> None:
        async with self.lock:
            if self.spent_micros + self.reserved_micros + maximum > self.confirmed_max_micros:
                raise Capped(
                    f"the next call ({label}) may cost up to {maximum} micros; with {self.spent_micros} spent and "
                    f"{self.reserved_micros} reserved it could pass the confirmed maximum of "
                    f"{self.confirmed_max_micros} micros, so it was not started"
                )
            self.reserved_micros += maximum

    def settle(self, maximum: int, charged: int) -> None:
        self.reserved_micros -= maximum
        self.spent_micros += charged


def first_expected(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The first cap, step failure or gateway refusal inside a task group's exceptions, if any."""
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            found = first_expected(error)
            if found is not None:
                return found
        elif isinstance(error, (Superseded, Capped, StepFailed, CancelRequested, GlasskeyError)):
            return error
    return None
