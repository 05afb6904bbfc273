"""Identifiers: prefixed, 96 random bits, never repeated, not shared with a forked child."""

from __future__ import annotations

import os
import re

from glasskey.ids import new_id


def test_ids_are_prefixed_hex_and_do_not_repeat_across_many_pool_refills() -> None:
    ids = [new_id("req") for _ in range(5_000)]
    assert all(re.fullmatch(r"req_[0-9a-f]{24}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_forked_child_does_not_hand_out_the_ids_its_parent_will() -> None:
    new_id("warm")  # the parent's pool now holds ids it has not handed out yet
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next ids and leave at once
        os.close(read_end)
        os.write(write_end, " ".join(new_id("x") for _ in range(8)).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        child_ids = set(pipe.read().split())
    os.waitpid(pid, 0)
    parent_ids = {new_id("x") for _ in range(8)}
    assert len(child_ids) == 8
    assert not child_ids & parent_ids
