"""Admin changes are announced: the writing process drops its cache at once, the others on the message."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conftest_helpers import require_redis
from glasskey.cache import ReadCache
from glasskey.invalidation import Invalidation, InvalidationMiddleware
from glasskey.routing.health import HealthBoard


def answering(status: int):
    async def endpoint(request: Request) -> Response:
        return Response(status_code=status)

    return endpoint


def test_successful_admin_and_dashboard_changes_are_announced_and_nothing_else(sqlite_db):
    cache = ReadCache(sqlite_db)
    invalidation = Invalidation(cache)  # no Redis: this process's cache only
    app = Starlette(
        routes=[
            Route("/admin/api/keys/k/revoke", answering(200), methods=["POST"]),
            Route("/admin/api/keys/k", answering(404), methods=["PATCH"]),
            Route("/keys/k/revoke", answering(303), methods=["POST", "GET"]),
            Route("/signin", answering(303), methods=["POST"]),
            Route("/v1/chat/completions", answering(200), methods=["POST"]),
        ]
    )
    app.add_middleware(InvalidationMiddleware, invalidation=invalidation)

    async def story() -> list[int]:
        seen = []
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            for method, path in (
                ("POST", "/admin/api/keys/k/revoke"),  # announced
                ("PATCH", "/admin/api/keys/k"),  # refused: nothing changed
                ("POST", "/keys/k/revoke"),  # the dashboard's form, answered with a redirect: announced
                ("GET", "/keys/k/revoke"),  # a read
                ("POST", "/signin"),  # public, changes nothing cached
                ("POST", "/v1/chat/completions"),  # traffic, not a change
            ):
                await client.request(method, path)
                seen.append(cache.generation)
        return seen

    assert asyncio.run(story()) == [1, 1, 2, 2, 2, 2]


def test_an_announcement_reaches_another_process_cache_through_redis(sqlite_db):
    url = require_redis()
    channel = f"glasskey:test:invalidate:{uuid.uuid4().hex}"
    writer_cache, reader_cache = ReadCache(sqlite_db), ReadCache(sqlite_db)
    writer = Invalidation(writer_cache, url, channel=channel)
    reader = Invalidation(reader_cache, url, channel=channel)

    async def story() -> None:
        listening = asyncio.create_task(reader.listen())
        try:
            while reader_cache.generation == 0:  # subscribed (it drops its cache once on subscribing)
                await asyncio.sleep(0.01)
            before = reader_cache.generation
            await writer.changed("POST /admin/api/keys/k/revoke")
            for _ in range(100):
                if reader_cache.generation > before:
                    break
                await asyncio.sleep(0.01)
            assert reader_cache.generation == before + 1 and reader.received == 1
            assert writer_cache.generation == 1 and writer.published == 1
        finally:
            listening.cancel()
            await writer.aclose()
            await reader.aclose()

    asyncio.run(story())


def test_a_read_overtaken_by_an_invalidation_is_read_again_and_never_put_back(sqlite_db):
    cache = ReadCache(sqlite_db)
    reads: list[int] = []

    def load(conn) -> int:
        reads.append(1)
        if len(reads) == 1:
            cache.invalidate()  # a change announced while this read was in flight
        return len(reads)

    async def story() -> tuple[int, int]:
        return await cache.get("route", load), await cache.get("route", load)

    # The first caller gets the second read (after the change), which is what stays cached.
    assert asyncio.run(story()) == (2, 2)
    assert len(reads) == 2


def test_an_announced_change_ends_the_wait_for_stale_copies_of_a_forced_route(sqlite_db):
    clock = [100.0]
    board = HealthBoard(lambda: clock[0], force_settle_seconds=2.0)
    invalidation = Invalidation(ReadCache(sqlite_db), board=board)
    board.sync_forced("r", "open")  # another process forced it
    board.sync_forced("r", None)  # within the settle time: taken for a stale copy
    assert board.state("r") == "open"
    asyncio.run(invalidation.changed("POST /admin/api/routes/r/breaker"))  # every cached copy dropped
    board.sync_forced("r", None)  # so this copy was read after the change: applied at once
    assert board.state("r") == "closed"
