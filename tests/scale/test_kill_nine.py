"""kill -9 of one of three gateway processes under 200 concurrent streams, on the cluster of tests/scale.

A seed picks the process killed, how many of its streams have started when it dies, and a further
pause. Then, whatever the moment:
* every acknowledged request (a stream that ended with ``[DONE]``) has its receipt and its charge;
* the streams of the two survivors all finish;
* the dead process's holds are voided (none stays pending), each of its requests whose hold was
  committed has a receipt (``interrupted``, charged nothing or, if its stream had recorded its
  progress, what it recorded forwarding, within its hold: ``gateway.instances``; or ``succeeded`` if
  it settled just before the kill), and the ledger audits clean.

A hold is answered before its group commit (``store/writer.py``: nothing is acknowledged on the
strength of a hold alone), so a request whose hold was still in the dead process's open transaction
leaves nothing behind: no hold to void, no charge, and no receipt. The test counts them (printed
with ``-s``; ``bench.kill_streams`` records them) and checks none of them was acknowledged.

The killed process's liveness lock (``gateway/liveness.py``) is freed with its connections, so the
survivors void its holds within about two seconds; the test restarts it on its port at once, as a
supervisor would, and the new process voids whatever is left at start-up. The suite runs one seed;
``python -m bench.kill_streams --seeds 20`` runs twenty (``GLASSKEY_KILL_SEEDS``).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import select

from gateway_fixtures import settled_receipt
from glasskey.store.tables import transfers
from scale_cluster import Cluster, Keys

STREAMS = 200
SEEDS = int(os.environ.get("GLASSKEY_KILL_SEEDS", "1"))
BODY = {
    "model": "claude-sonnet-4-5",  # its routed route streams a chunk every 100 ms (conftest.py)
    "messages": [{"role": "user", "content": "hi"}],
    # About 4 s of chunks: the kill below lands while the victim streams, even when this test's own
    # event loop, reading 200 streams, is late to notice the first one began (1.5 s was not enough).
    "max_tokens": 40,
    "stream": True,
    "stream_options": {"include_usage": True},
}


@dataclass
class Stream:
    process: int
    request_id: str | None = None  # the gateway answered (headers): it holds for this request
    done: bool = False  # [DONE] arrived: the request is acknowledged
    cut: bool = False  # the connection broke (its process died)


async def one_stream(client: httpx.AsyncClient, url: str, stream: Stream) -> None:
    try:
        async with client.stream("POST", url, json=BODY) as response:
            assert response.status_code == 200, await response.aread()
            stream.request_id = response.headers["x-request-id"]
            async for line in response.aiter_lines():
                if line == "data: [DONE]":
                    stream.done = True
    except httpx.TransportError:
        stream.cut = True


async def streams_with_a_kill(three: Cluster, keys: Keys, rng: random.Random, victim: int) -> list[Stream]:
    """200 streams over the three processes; ``victim`` gets SIGKILL while its streams are in flight."""
    streams = [Stream(process=index % 3) for index in range(STREAMS)]
    victims_started_before_kill = rng.randint(1, 40)
    limits = httpx.Limits(max_connections=STREAMS + 10, max_keepalive_connections=0)
    headers = {"authorization": f"Bearer {keys['kill'][1]}"}
    async with httpx.AsyncClient(timeout=60, limits=limits, headers=headers) as client:
        tasks = [
            asyncio.create_task(one_stream(client, f"{three.url(s.process)}/v1/chat/completions", s)) for s in streams
        ]
        deadline = time.monotonic() + 20
        first_started: float | None = None
        while time.monotonic() < deadline:
            on_victim = [s for s in streams if s.process == victim]
            started = sum(1 for s in on_victim if s.request_id is not None)
            if started and first_started is None:
                first_started = time.monotonic()
            # Never later than 0.5 s after the victim's first stream began: each lasts about 4 s, so
            # with the pause below (at most 0.3 s) its streams are still in flight when it dies.
            if started >= victims_started_before_kill or (
                first_started is not None and time.monotonic() - first_started > 0.5
            ):
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(rng.uniform(0, 0.3))
        three.processes[victim].kill()  # SIGKILL: no drain, no settlement, no flush
        await asyncio.gather(*tasks)
    three.processes[victim].wait(timeout=10)
    return streams


def instance_of(three: Cluster, keys: Keys, index: int) -> str:
    """The instance id of process ``index``: the one on the hold of a request it settled."""
    body = {**BODY, "stream": False, "max_tokens": 1}
    body.pop("stream_options")
    headers = {"authorization": f"Bearer {keys['kill'][1]}"}
    response = httpx.post(f"{three.url(index)}/v1/chat/completions", json=body, headers=headers, timeout=30)
    assert response.status_code == 200, response.text  # settled (committed) before it was answered
    with three.services.db.read() as conn:
        instance_id = conn.scalar(
            select(transfers.c.instance_id).where(transfers.c.request_id == response.headers["x-request-id"])
        )
    assert instance_id is not None
    return str(instance_id)


@pytest.mark.parametrize("seed", range(SEEDS))
def test_kill_9_of_one_process_under_200_streams_loses_no_acknowledged_request(three, keys, seed):
    for index, process in enumerate(three.processes):
        if process.poll() is not None:  # an earlier seed failed before it restarted its victim
            three.restart(index)
    rng = random.Random(seed)
    victim = rng.randrange(3)
    instance_id = instance_of(three, keys, victim)
    started_at = time.monotonic()
    streams = asyncio.run(streams_with_a_kill(three, keys, rng, victim))

    # Restarted on its port as a supervisor would (before any assertion, so that a failed seed leaves
    # the cluster whole for the tests after it); whichever process voids the dead one's holds first
    # (a survivor seeing its liveness lock free, or the new process at start-up), none is left pending.
    three.restart(victim)
    on_victim = [s for s in streams if s.process == victim]
    assert any(s.cut for s in on_victim), "the kill came after the victim's streams ended"
    survivors = [s for s in streams if s.process != victim]
    assert all(s.done and not s.cut for s in survivors)  # the other two processes finished every stream

    answered = [s.request_id for s in streams if s.request_id is not None]
    with three.services.db.read() as conn:
        pending = conn.execute(
            select(transfers.c.id).where(transfers.c.status == "pending", transfers.c.instance_id == instance_id)
        ).all()
        held = set(conn.execute(select(transfers.c.request_id).where(transfers.c.request_id.in_(answered))).scalars())
    assert pending == []  # the dead process's holds are voided
    interrupted = interrupted_charged = uncommitted = settled_but_cut = 0
    for stream in streams:
        if stream.request_id is None:
            continue  # never answered: refused at the connection, nothing was taken
        if stream.request_id not in held:  # its hold died uncommitted with the process
            assert stream.process == victim and not stream.done
            uncommitted += 1
            continue
        receipt = settled_receipt(three.services, stream.request_id)
        if stream.done:  # acknowledged: charged and receipted, whichever process served it
            assert receipt["status"] == "succeeded" and receipt["charge_micros"] > 0, receipt
        else:
            assert stream.process == victim
            assert receipt["status"] in ("interrupted", "succeeded"), receipt  # settled just before the kill
            if receipt["status"] == "interrupted":
                assert receipt["error_source"] == "gateway"
                if "interrupted_output_recorded" in receipt["flags"]:
                    # Its stream had recorded what it forwarded (about a second in: a slow machine
                    # gets there before the kill): charged for that, never above its hold.
                    assert 0 <= receipt["charge_micros"] <= receipt["hold_micros"], receipt
                    interrupted_charged += 1
                else:
                    assert receipt["charge_micros"] == 0 and "interrupted_output_unknown" in receipt["flags"], receipt
                interrupted += 1
            else:  # its content was sent and its settlement committed; the kill took only its [DONE]
                settled_but_cut += 1
    three.audit_ok()
    outcome = {
        "seed": seed,
        "victim": victim,
        "victim_streams_answered": sum(1 for s in on_victim if s.request_id is not None),
        "victim_streams_cut": sum(1 for s in on_victim if s.cut),
        "acknowledged": sum(1 for s in streams if s.done),
        "interrupted_receipts": interrupted,
        "interrupted_charged_for_progress": interrupted_charged,
        "settled_but_cut": settled_but_cut,
        "uncommitted_holds": uncommitted,
        "seconds": round(time.monotonic() - started_at, 2),
    }
    print("kill-9 outcome " + json.dumps(outcome))
