"""The demo's research job: the sample inputs, run once on the simulated provider with a demo key.

``run_demo_job`` stores the samples (monthly MSFT and AAPL closes and two short notes) for the
key, checks the preflight, confirms its maximum and runs the job through the gateway's own
request lifecycle, exactly as ``POST /v1/research/jobs`` would, so ``make demo`` shows a finished
report on the dashboard. It runs once per database: a later start finds the job and reuses it.
"""

from __future__ import annotations

from importlib import resources

import anyio
from sqlalchemy import select

from glasskey.gateway.lifecycle import Lifecycle
from glasskey.keys.service import KeyRecord
from glasskey.research import NOTICE
from glasskey.research.confirm import confirm_job
from glasskey.research.jobs import store_file
from glasskey.research.preflight import preflight
from glasskey.research.runner import JobRunner
from glasskey.research.spec import JobSpec, prepare
from glasskey.research.tables import research_jobs
from glasskey.services import Services

SAMPLES = ("stocks_msft_aapl.csv", "microsoft_2005_2010.md", "apple_2005_2010.md")
QUESTION = "How did MSFT and AAPL compare on risk and return from 2005 to 2010, and what explains the difference?"


def sample_bytes(name: str) -> bytes:
    return resources.files("glasskey.research").joinpath("samples", name).read_bytes()


def run_demo_job(services: Services, key: KeyRecord) -> str:
    """The id of the demo's finished job: an existing one of the key's org, or a new one run now."""
    with services.db.read() as conn:
        existing = conn.execute(
            select(research_jobs.c.id).where(research_jobs.c.org_id == key.org_id).order_by(research_jobs.c.created_at)
        ).first()
    if existing is not None:
        return str(existing.id)
    now = services.clock()
    with services.db.write() as conn:
        files = [store_file(conn, key.id, name, sample_bytes(name), now) for name in SAMPLES]
    body = {"question": QUESTION, "inputs": [f.id for f in files], "depth": "quick", "risk_free_rate": "0.02",
            "start": "2005-01-01", "end": "2010-01-01"}  # fmt: skip
    prepared = prepare(JobSpec.parse(body), files)
    with services.db.read() as conn:
        result = preflight(conn, key, prepared, services.health, now)
    with services.db.write() as conn:
        maximum = result["cost"]["max_micros"]
        job_id = confirm_job(conn, key, prepared, result, maximum, now, instance_id=services.instance_id)
    anyio.run(JobRunner(services, Lifecycle(services)).run, job_id)
    return job_id


def demo_research_line(services: Services, job_id: str) -> str:
    url = f"{services.settings.effective_public_url}/research/{job_id}"
    return f"# A research job on the sample data, run on the simulated provider: {url} ({NOTICE})"
