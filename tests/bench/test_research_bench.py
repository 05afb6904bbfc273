"""``bench.research`` still measures what it says: a preflight of 41 quoted calls, and a whole job."""

from __future__ import annotations

import anyio
from bench.research import measure, setup


def test_the_research_benchmark_times_a_ten_document_preflight_and_a_job(tmp_path):
    services, key = setup(tmp_path)
    try:
        numbers = anyio.run(measure, services, key, 1)
    finally:
        services.close()
    assert numbers["planned_calls"] == 41  # 10 documents x 2 chunks x 2 passes + the analysis
    assert 0 < numbers["preflight_ms_p50"] < 5000
    assert numbers["job_ms"] > 0 and numbers["direct_calls_ms"] > 0
