"""The upstream HTTP client's timeouts: each one fires, is a 504 ``ProviderError``, and names itself.

A client that leaves while the gateway waits on the upstream is a cancellation, never a timeout:
the lifecycle must see it as the client leaving, not as the upstream's fault.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from glasskey.providers.base import ProviderError
from glasskey.providers.http import Timeouts, UpstreamHTTP
from scripted_upstream import Answer, Seen, body_of, scripted_upstream, slow_chunks


def late_answer(pause_seconds: float) -> Callable[[Seen], Answer]:
    """An upstream that sends nothing, not even its headers, for ``pause_seconds``."""

    def answer(request: Seen) -> Answer:
        time.sleep(pause_seconds)  # the scripted upstream runs in a thread of its own
        return Answer(200, body_of(b'{"ok": true}'))

    return answer


async def post(base_url: str, timeouts: Timeouts, *, stream: bool) -> Any:
    http = UpstreamHTTP()
    url = f"{base_url}/x"
    try:
        if stream:
            return [event async for event in http.post_sse("p", url, headers={}, body={}, timeouts=timeouts)]
        payload, _ = await http.post_json("p", url, headers={}, body={}, timeouts=timeouts)
        return payload
    finally:
        await http.aclose()


def timed_out(base_url: str, timeouts: Timeouts, *, stream: bool) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        asyncio.run(post(base_url, timeouts, stream=stream))
    return caught.value


@pytest.mark.parametrize("stream", [False, True])
def test_a_late_first_byte_is_a_first_byte_timeout(stream: bool) -> None:
    with scripted_upstream(late_answer(0.5)) as (base_url, _):
        error = timed_out(base_url, Timeouts(first_byte_ms=100), stream=stream)
    assert (error.status, error.timeout, error.error_type) == (504, True, "timeout")
    assert error.message == "the upstream timed out (first byte)"


@pytest.mark.parametrize("stream", [False, True])
def test_a_long_silence_mid_body_is_a_chunk_gap_timeout(stream: bool) -> None:
    chunks = slow_chunks(b"data: {}\n\n", b"data: [DONE]\n\n", pause_seconds=0.5)
    with scripted_upstream(lambda request: Answer(200, chunks)) as (base_url, _):
        error = timed_out(base_url, Timeouts(chunk_gap_ms=100), stream=stream)
    assert error.timeout
    assert error.message == "the upstream timed out (chunk gap)"


@pytest.mark.parametrize("stream", [False, True])
def test_a_body_that_never_ends_is_a_whole_request_timeout(stream: bool) -> None:
    # Every gap is short, but the whole answer takes longer than the total allows.
    chunks = slow_chunks(*[b"data: {}\n\n"] * 20, pause_seconds=0.05)
    with scripted_upstream(lambda request: Answer(200, chunks)) as (base_url, _):
        error = timed_out(base_url, Timeouts(chunk_gap_ms=1_000, total_ms=300), stream=stream)
    assert error.timeout
    assert error.message == "the upstream timed out (the whole request)"


def test_a_json_answer_in_slow_pieces_within_every_limit_arrives_whole() -> None:
    chunks = slow_chunks(b'{"a": ', b"1}", pause_seconds=0.05)
    with scripted_upstream(lambda request: Answer(200, chunks)) as (base_url, _):
        result = asyncio.run(post(base_url, Timeouts(chunk_gap_ms=1_000, total_ms=5_000), stream=False))
    assert result == {"a": 1}


def test_a_stream_in_slow_pieces_within_every_limit_arrives_whole() -> None:
    chunks = slow_chunks(b'data: {"a": 1}\n\n', b'data: {"b": 2}\n\n', pause_seconds=0.05)
    with scripted_upstream(lambda request: Answer(200, chunks)) as (base_url, _):
        result = asyncio.run(post(base_url, Timeouts(chunk_gap_ms=1_000, total_ms=5_000), stream=True))
    assert [event.data for event in result] == ['{"a": 1}', '{"b": 2}']


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_leaving_is_a_cancellation_not_a_timeout(stream: bool) -> None:
    async def leave_early(base_url: str) -> bool:
        with anyio.move_on_after(0.1) as scope:
            await post(base_url, Timeouts(first_byte_ms=150, total_ms=150), stream=stream)
        return scope.cancelled_caught

    with scripted_upstream(late_answer(0.5)) as (base_url, _):
        assert asyncio.run(leave_early(base_url)) is True


def test_a_cookie_an_upstream_sets_is_never_sent_back() -> None:
    # The pool is shared by every client of the gateway: a cookie kept for one would reach the next.
    def answer(request: Seen) -> Answer:
        headers = {"content-type": "application/json", "set-cookie": "session=abc123; Path=/"}
        return Answer(200, body_of(b'{"ok": true}'), headers)

    async def twice(base_url: str) -> None:
        http = UpstreamHTTP()
        try:
            for _ in range(2):
                await http.post_json("p", f"{base_url}/x", headers={}, body={}, timeouts=Timeouts())
        finally:
            await http.aclose()

    with scripted_upstream(answer) as (base_url, seen):
        # By name: a cookie jar ignores cookies set by a bare IP address.
        asyncio.run(twice(base_url.replace("127.0.0.1", "localhost")))
    assert len(seen) == 2
    assert all("cookie" not in request.headers for request in seen)
