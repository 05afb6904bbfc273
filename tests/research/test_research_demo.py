"""The demo runs the sample research job once, on the simulated provider, with its routed key."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import func, select

from glasskey.cli import main
from glasskey.demo import demo_settings, seed_demo
from glasskey.ledger import audit
from glasskey.research import NOTICE
from glasskey.research.demo import demo_research_line, run_demo_job
from glasskey.research.jobs import job_row, job_status
from glasskey.research.tables import research_jobs
from glasskey.services import build_services


def test_the_demo_job_finishes_once_and_is_reused_on_the_next_start(tmp_path):
    services = build_services(demo_settings(tmp_path / "data", "127.0.0.1", 8787, environ={}))
    try:
        routed = next(k for k in seed_demo(services).keys if k.settlement == "routed")
        job_id = run_demo_job(services, routed.record)
        again = next(k for k in seed_demo(services).keys if k.settlement == "routed")
        assert run_demo_job(services, again.record) == job_id
        with services.db.read() as conn:
            status = job_status(conn, job_id, None, services.clock())
            report = job_row(conn, job_id, None).report
            jobs = conn.execute(select(func.count()).select_from(research_jobs)).scalar_one()
            checked = audit(conn)
        assert status["status"] == "succeeded" and jobs == 1
        assert report["markdown"].startswith(f"> **{NOTICE}**") and report["total_charge_micros"] > 0
        checked.raise_if_broken()
        assert f"/research/{job_id}" in demo_research_line(services, job_id)
    finally:
        services.close()


def test_glasskey_demo_prints_where_the_research_report_is(tmp_path):
    result = CliRunner().invoke(main, ["demo", "--no-serve", "--data-dir", str(tmp_path / "d")], env={})
    assert result.exit_code == 0, result.output
    assert "# A research job on the sample data" in result.output and "/research/rjob_" in result.output
