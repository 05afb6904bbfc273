"""The verdicts of issue 19's targets, from results shaped as ``bench.run`` writes them."""

from __future__ import annotations

from typing import Any

from bench.analysis import Verdict
from bench.issue19 import verdicts_19


def cell(
    target: str, concurrency: int, rep: int, throughput: float, p50: float = 1.0, p99: float = 2.0
) -> dict[str, Any]:
    return {
        "rep": rep,
        "target": target,
        "latency_ms": 0,
        "stream": False,
        "concurrency": concurrency,
        "result": {"throughput_rps": throughput, "latency_ms": {"p50": p50, "p99": p99}},
    }


def workers_round(rep: int, workers: int, throughput: float, per_cpu: float, load: str = "total") -> dict[str, Any]:
    return {
        "rep": rep,
        "workers": workers,
        "concurrency": 64 if load == "total" else 64 * workers,
        "load": load,
        "requests_per_cpu_second": per_cpu,
        "result": {"throughput_rps": throughput},
    }


def results() -> dict[str, Any]:
    matrix = []
    for rep in range(3):
        matrix += [
            cell("direct", 1, rep, 9000, p50=0.1, p99=0.5),
            cell("glasskey-sqlite", 1, rep, 900, p50=0.9, p99=2.5 + rep),  # p99 added: 2.0, 3.0, 4.0 ms
        ]
        for concurrency in (16, 64):
            matrix += [
                cell("glasskey-sqlite", concurrency, rep, 1600),
                cell("glasskey-postgres", concurrency, rep, 1300),  # 81%
                cell("portkey", concurrency, rep, 1000),  # 1.6×
                cell("litellm", concurrency, rep, 100 if rep else 150),  # 16× twice, then 10.7×
            ]
    rounds = [
        row
        for rep in range(3)
        for row in (
            workers_round(rep, 1, 1000, 1000),
            workers_round(rep, 2, 1300, 900),
            workers_round(rep, 4, 1350, 800),
            workers_round(rep, 2, 1400, 950, "per worker"),
            workers_round(rep, 4, 1300, 700 + 100 * rep, "per worker"),  # 70%, 80%, 90% of one worker's
        )
    ]
    soak = {
        "samples": [{"requests": 50_000 * (i + 1), "rss_kib": 100_000 + i, "throughput_rps": 1500} for i in range(20)]
    }
    scale = {
        "fill": {"keys": 100_000, "receipts": 10_000_000, "fill_seconds": 300.0, "database_bytes": 8 * 2**30},
        "runs": [
            {"rep": 0, "target": label, "concurrency": 16, "result": {"throughput_rps": value}}
            for label, value in (("empty", 1000), ("scale", 950))
        ],
    }
    return {"matrix": matrix, "workers": {"rounds": rounds}, "soak": soak, "scale": scale}


def judged(verdicts: list[Verdict], start: str) -> list[tuple[bool | None, str]]:
    return [(v.met, v.measured) for v in verdicts if v.goal.startswith(start)]


def test_each_target_is_judged_from_the_rounds_as_the_issue_states_it():
    verdicts = verdicts_19(results())
    # Under each load, the per-worker one judged against the same one-worker phase as the total one.
    assert judged(verdicts, "scaling: 2 workers on") == [
        (True, "90% (rounds: 90%, 90%, 90%)"),
        (True, "95% (rounds: 95%, 95%, 95%)"),
    ]
    assert judged(verdicts, "scaling: 4 workers on") == [
        (False, "80% (rounds: 80%, 80%, 80%)"),
        (False, "80% (rounds: 70%, 80%, 90%)"),
    ]
    assert [v.goal.endswith("(c=64 per worker)") for v in verdicts if v.goal.startswith("scaling: 4 workers on")] == [
        False,
        True,
    ]
    assert judged(verdicts, "scaling: 2 workers' throughput")[0][0] is True  # 1.30×
    litellm = judged(verdicts, "one worker ≥ 15× LiteLLM")
    assert [met for met, _ in litellm] == [False, False]  # median 16×, but one round only 10.7×
    assert litellm[0][1] == "median 16.0×, slowest round 10.7×"
    assert [met for met, _ in judged(verdicts, "one worker ≥ 1.5× Portkey")] == [True, True]
    assert judged(verdicts, "added latency at c=1, p99") == [(True, "3.00 ms, slowest round 4.00 ms")]
    assert [met for met, _ in judged(verdicts, "PostgreSQL ≥ 75%")] == [True, True]
    assert judged(verdicts, "memory and throughput flat")[0][0] is True
    assert judged(verdicts, "100,000 keys")[0][0] is True


def test_a_run_without_the_per_worker_load_is_judged_on_the_total_load_alone():
    old = results()
    old["workers"]["rounds"] = [row for row in old["workers"]["rounds"] if row["load"] == "total"]
    for row in old["workers"]["rounds"]:
        del row["load"]  # as runs before the per-worker load wrote them
    assert judged(verdicts_19(old), "scaling: 4 workers on") == [(False, "80% (rounds: 80%, 80%, 80%)")]


def test_a_soak_shorter_than_a_million_requests_is_not_measured_and_a_fall_in_throughput_is_not_flat():
    short = results()
    short["soak"]["samples"] = short["soak"]["samples"][:4]
    falling = results()
    for index, sample in enumerate(falling["soak"]["samples"]):
        sample["throughput_rps"] = 1500 - 40 * index
    goal = "memory and throughput flat"
    assert next(v for v in verdicts_19(short) if v.goal.startswith(goal)).met is None
    assert next(v for v in verdicts_19(falling) if v.goal.startswith(goal)).met is False
