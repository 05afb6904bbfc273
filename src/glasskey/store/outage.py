"""Whether an exception means glasskey's own infrastructure is down: its database or its Redis.

Such a failure is neither the client's nor a bug: the request is answered 503 with
``source: gateway`` and a ``retry-after``, never 401 or 402 (a key lookup or a hold that could not
run says nothing about the key or the wallet), and never a 200 without its receipt.
"""

from __future__ import annotations

import sqlite3

import psycopg
import redis.exceptions
import sqlalchemy.exc

from glasskey.errors import GatewayError

# What the drivers raise when the server cannot be reached or the connection broke: SQLAlchemy's
# wrappers, and psycopg's and sqlite3's own for statements run on the driver connection.
OUTAGES: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    sqlite3.OperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)
RETRY_AFTER_SECONDS = 2


def gateway_failure(error: BaseException) -> GatewayError | None:
    """The client's answer for ``error`` if it is an outage of glasskey's own infrastructure, else None."""
    if isinstance(error, GatewayError):
        return error
    if not isinstance(error, OUTAGES):
        return None
    what = "Redis" if isinstance(error, redis.exceptions.RedisError) else "database"
    return GatewayError(
        f"glasskey's {what} is unavailable; nothing was charged. Try again shortly.",
        retry_after_seconds=RETRY_AFTER_SECONDS,
    )
