"""The benchmark's load generator: one keep-alive connection per client, as its figures assume."""

from __future__ import annotations

import asyncio

from bench.load import LoadSpec, run_load
from bench.upstream import Answers, UpstreamProtocol


class CountingUpstream(UpstreamProtocol):
    opened = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        CountingUpstream.opened += 1
        super().connection_made(transport)


async def load_against_counting_upstream(concurrency: int, requests: int, stream: bool) -> tuple[int, int, int]:
    CountingUpstream.opened = 0
    answers = Answers()
    server = await asyncio.get_running_loop().create_server(lambda: CountingUpstream(answers, 0.0, 0.0), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        spec = LoadSpec(
            url=f"http://127.0.0.1:{port}/v1/chat/completions",
            model="gpt-4o-mini",
            concurrency=concurrency,
            stream=stream,
            requests_max=requests,
            duration_s_max=30,
            warmup_requests=0,
        )
        result = await run_load(spec)
    return result.requests, result.errors, CountingUpstream.opened


def test_each_client_keeps_one_connection_for_all_its_requests() -> None:
    # The parser resets once a message completes; asking it then whether to keep the connection
    # always says no, and every request paid a new connection. Two clients, forty requests: two.
    for stream in (False, True):
        requests, errors, opened = asyncio.run(load_against_counting_upstream(2, 40, stream))
        assert (requests, errors) == (40, 0)
        assert opened == 2
