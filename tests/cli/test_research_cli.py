"""``glasskey research``: a client of a running gateway with the person's key."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway_fixtures import gateway  # noqa: F401  (the fixture)
from glasskey.cli import main
from glasskey.research import NOTICE
from research_helpers import QUESTION, SAMPLES, sample_bytes


@pytest.fixture
def samples(tmp_path) -> list[str]:
    paths = []
    for name in SAMPLES:
        path = tmp_path / name
        path.write_bytes(sample_bytes(name))
        paths.append(str(path))
    return paths


def invoke(gateway, *args: str):  # noqa: F811
    env = {"GLASSKEY_URL": gateway.v1, "GLASSKEY_KEY": gateway.routed_key}
    return CliRunner().invoke(main, ["research", *args], env=env, catch_exceptions=False)


def test_preflight_prints_the_plan_permissions_runtime_and_cost(gateway, samples):  # noqa: F811
    result = invoke(gateway, "preflight", QUESTION, *samples, "--depth", "quick")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(NOTICE)
    for words in ("map: 2 call(s) on gpt-4o-mini", "deep claude-sonnet-4-5: allowed", "Expected runtime", "ADMITTED"):
        assert words in result.output


def test_run_confirms_follows_and_saves_the_report_then_show_and_list_find_it(gateway, samples, tmp_path):  # noqa: F811
    saved = tmp_path / "report.md"
    result = invoke(gateway, "run", QUESTION, *samples, "--depth", "quick", "--start", "2005-01-01", "--yes",
                    "--save", str(saved))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "succeeded: spent $" in result.output
    assert Path(saved).read_text().startswith(f"> **{NOTICE}**")
    job_id = next(line.split()[1] for line in result.output.splitlines() if line.startswith("job "))
    shown = invoke(gateway, "show", job_id)
    assert shown.exit_code == 0 and "succeeded" in shown.output and "analysis" in shown.output
    listed = invoke(gateway, "list")
    assert job_id in listed.output
    gateway.audit_ok()


def test_a_refused_model_is_a_clear_failure(gateway, samples):  # noqa: F811
    result = invoke(gateway, "run", QUESTION, *samples, "--deep-model", "gpt-5", "--yes")
    assert result.exit_code == 1
    assert "REFUSED by policy.allowed_models" in result.output and "not admitted" in result.output


def test_a_bad_file_names_its_line_and_column(gateway, tmp_path):  # noqa: F811
    bad = tmp_path / "p.csv"
    bad.write_text("date,symbol,close\n2020-01-01,AAA,1\n2020-02-01,AAA,-2\n")
    result = invoke(gateway, "preflight", QUESTION, str(bad))
    assert result.exit_code == 1 and "file p.csv, line 3, column close" in result.output
