"""What the group-commit writer runs: a command of two phases, and how a batch of them runs.

A command (``Write``) is an object, not a closure: ``send(batch)`` runs or sends its statements,
``finish(batch)`` reads their answers once the batch's pipeline has been flushed. The accounting of
a request (``gateway.accounting.Hold``, ``Settlement``) and the ledger's two-phase transfers
(``ledger.CreatePending``, ``ResolvePending``) are such commands.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from glasskey.errors import GlasskeyError
from glasskey.store.batch import Batch

T_co = TypeVar("T_co", covariant=True)
# A command's result, or the error that fails it alone.
Outcome = tuple[Any, BaseException | None]


class Write(Protocol[T_co]):
    """What the writer runs: two phases, so that a batch's statements share one pipeline.

    ``send`` runs or sends the write's statements (``Batch.execute`` / ``Batch.send``); ``finish``
    runs after the pipeline has been flushed, reads the answers and returns the result, or raises a
    ``GlasskeyError`` (a refusal), having left nothing behind. Both may run again, in a transaction
    of their own, when their batch failed for another write's sake: they must give the same result.
    """

    def send(self, batch: Batch) -> None: ...

    def finish(self, batch: Batch) -> T_co: ...


def run_commands(batch: Batch, writes: list[Write[Any]]) -> list[Outcome]:
    """Send every write's statements, flush them as one pipeline, then finish each write.

    Each write's result, or the refusal that fails it alone; its deferred writes join the batch's
    only if it succeeded. Any other exception propagates: the batch must be rolled back.
    """
    jobs = []
    for write in writes:
        job = batch.job()
        refusal = _refused(write.send, job)
        jobs.append((write, job, refusal))
    batch.flush()
    outcomes: list[Outcome] = []
    for write, job, refusal in jobs:
        result = None
        if refusal is None:
            try:
                result = write.finish(job)
            except GlasskeyError as refused:
                refusal = refused
        if refusal is None:
            batch.keep(job)
        outcomes.append((result, refusal))
    return outcomes


def _refused(send: Any, job: Batch) -> GlasskeyError | None:
    try:
        send(job)
    except GlasskeyError as refusal:  # e.g. an amount refused before any statement ran
        return refusal
    return None
