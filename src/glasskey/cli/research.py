"""``glasskey research``: preflight, run, show, cancel, list and resume research jobs.

These verbs are a client of a running gateway, not of its database: a job runs with the
person's key through the gateway's own request lifecycle, so the key (``--key`` or
``GLASSKEY_KEY`` / ``OPENAI_API_KEY``) and the gateway's ``/v1`` URL (``--url`` or
``GLASSKEY_URL`` / ``OPENAI_BASE_URL``) are what they need. ``run`` shows the preflight, asks
for confirmation of the maximum, follows the job's events with a progress bar, and prints or
saves the report. Research support, not financial advice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click
import httpx

from glasskey.cli.base import USD, main, table
from glasskey.money import format_usd

DEFAULT_URL = "http://127.0.0.1:8787/v1"
TIMEOUT_SECONDS = 60.0


class Gateway:
    """The research API of one gateway, with one key."""

    def __init__(self, url: str | None, key: str | None) -> None:
        self.url = (url or os.environ.get("GLASSKEY_URL") or os.environ.get("OPENAI_BASE_URL") or DEFAULT_URL).rstrip(
            "/"
        )
        key = key or os.environ.get("GLASSKEY_KEY") or os.environ.get("OPENAI_API_KEY")
        if not key:
            raise click.ClickException("no key: pass --key or set GLASSKEY_KEY (or OPENAI_API_KEY)")
        self.headers = {"Authorization": f"Bearer {key}"}

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = httpx.request(
                method, f"{self.url}/research{path}", headers=self.headers, timeout=TIMEOUT_SECONDS, **kwargs
            )
        except httpx.HTTPError as exc:
            raise click.ClickException(f"cannot reach the gateway at {self.url}: {exc}") from None
        if response.status_code >= 400:
            raise click.ClickException(_error_text(response))
        return response

    def upload(self, paths: tuple[Path, ...]) -> list[str]:
        parts = [("file", (path.name, path.read_bytes())) for path in paths]
        return [f["id"] for f in self.call("POST", "/files", files=parts).json()["data"]]


def _error_text(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return f"the gateway answered {response.status_code}: {response.text[:500]}"
    where = ", ".join(f"{k} {error[k]}" for k in ("file", "line", "column") if error.get(k) is not None)
    return f"{error.get('source', '?')}: {error.get('message')}" + (f" ({where})" if where else "")


def job_options(function: Any) -> Any:
    for decorator in reversed(
        [
            click.argument("question"),
            click.argument(
                "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
            ),
            click.option(
                "--depth",
                type=click.Choice(["quick", "standard", "thorough"]),
                default="standard",
                help="How many model calls the plan makes (quick, standard or thorough).",
            ),
            click.option("--quick-model", default=None, help="Default: the gateway's (gpt-4o-mini)."),
            click.option("--deep-model", default=None, help="Default: the gateway's (claude-sonnet-4-5)."),
            click.option("--start", default=None, help="First date of the data window, YYYY-MM-DD."),
            click.option("--end", default=None, help="Last date of the data window, YYYY-MM-DD."),
            click.option("--risk-free-rate", default="0", show_default=True, help="A yearly fraction, e.g. 0.02."),
            click.option("--url", default=None, help="The gateway's /v1 URL (GLASSKEY_URL)."),
            click.option("--key", default=None, help="The key that pays (GLASSKEY_KEY)."),
        ]
    ):
        function = decorator(function)
    return function


def _spec(question: str, ids: list[str], options: dict[str, Any]) -> dict[str, Any]:
    body = {"question": question, "inputs": ids, "depth": options["depth"], "risk_free_rate": options["risk_free_rate"]}
    for name in ("quick_model", "deep_model", "start", "end"):
        if options.get(name):
            body[name] = options[name]
    return body


def render_preflight(result: dict[str, Any]) -> str:
    lines = [result["notice"], "", f"Question: {result['question']} (depth {result['depth']})", "", "Plan:"]
    for step in result["plan"]["steps"]:
        model = f" on {step['model']}" if step["model"] else ""
        lines.append(f"  {step['name']}: {step['calls']} call(s){model} - {step['what']}")
    lines += ["", "Models:"]
    for m in result["models"]:
        if not m["allowed"]:
            alternatives = ", ".join(m.get("alternatives") or []) or "none"
            lines.append(f"  {m['role']} {m['model']}: REFUSED by {m['refused_by']} (allowed instead: {alternatives})")
        elif m["route"] is None:
            lines.append(f"  {m['role']} {m['model']}: no route ({m.get('message')})")
        else:
            health = m["health"]
            lines.append(
                f"  {m['role']} {m['model']}: allowed, route {m['route']['id']} ({m['route']['settlement']}), "
                f"circuit {health['circuit']}, success rate {health['success_rate'] or '-'}"
            )
    runtime, cost = result["runtime"], result["cost"]
    lines += ["", f"Expected runtime: p50 {runtime['p50_ms'] / 1000:.1f} s, p90 {runtime['p90_ms'] / 1000:.1f} s"]
    lines += [f"  {how}" for how in runtime["how"]]
    lines += [
        "",
        f"Cost: estimate {format_usd(cost['estimated_micros'])}, maximum {format_usd(cost['max_micros'])}",
        f"  {cost['how']}",
        f"Wallet: {result['wallet']['kind']}, {format_usd(result['wallet']['available_micros'])} available",
    ]
    for label, budget in result["budgets"].items():
        if budget is not None:
            lines.append(
                f"Budget ({label}): {format_usd(budget['left_micros'])} left of {format_usd(budget['limit_micros'])}"
            )
    lines += ["", ("ADMITTED: " if result["admitted"] else "NOT ADMITTED: ") + result["reason"]]
    return "\n".join(lines)


@main.group()
def research() -> None:
    """Research jobs on a key's quick and deep models (research support, not financial advice)."""


@research.command("preflight")
@job_options
@click.option("--json", "as_json", is_flag=True, help="Print the preflight as JSON.")
def research_preflight(
    question: str, files: tuple[Path, ...], url: str | None, key: str | None, as_json: bool, **options: Any
) -> None:
    """Show the plan, permissions, runtime and cost of a job; moves no money."""
    gateway = Gateway(url, key)
    result = _preflight(gateway, _spec(question, gateway.upload(files), options))
    click.echo(json.dumps(result, indent=2) if as_json else render_preflight(result))


def _preflight(gateway: Gateway, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(
        f"{gateway.url}/research/preflight", headers=gateway.headers, json=body, timeout=TIMEOUT_SECONDS
    )
    data: dict[str, Any] = response.json()
    if response.status_code == 402:  # the wallet refusal carries the preflight: show it, then say no
        click.echo(render_preflight(data["error"]["preflight"]))
        raise click.ClickException(_error_text(response))
    if response.status_code >= 400:
        raise click.ClickException(_error_text(response))
    return data


@research.command("run")
@job_options
@click.option(
    "--max",
    "max_micros",
    type=USD,
    default=None,
    help="The most the job may charge, in USD (default: the preflight's maximum).",
)
@click.option("--yes", is_flag=True, help="Confirm without asking.")
@click.option(
    "--save", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write the Markdown report here."
)
def research_run(
    question: str, files: tuple[Path, ...], url: str | None, key: str | None, max_micros: int | None, yes: bool,
    save: Path | None, **options: Any,
) -> None:  # fmt: skip
    """Preflight, confirm, run with a progress bar, then print or save the report."""
    gateway = Gateway(url, key)
    body = _spec(question, gateway.upload(files), options)
    result = _preflight(gateway, body)
    click.echo(render_preflight(result))
    if not result["admitted"]:
        raise click.ClickException(f"not admitted: {result['reason']}")
    maximum = result["cost"]["max_micros"] if max_micros is None else max_micros
    if not yes:
        click.confirm(f"Run it, charging at most {format_usd(maximum)}?", abort=True)
    job = gateway.call("POST", "/jobs", json={**body, "max_charge_micros": maximum}).json()
    click.echo(f"job {job['id']}")
    final = follow(gateway, job["id"], job["calls_planned"])
    click.echo(f"{final['status']}: spent {format_usd(final['spent_micros'])} of at most {format_usd(maximum)}")
    if final.get("error"):
        click.echo(final["error"])
    _print_report(gateway, job["id"], save)


def follow(gateway: Gateway, job_id: str, planned: int) -> dict[str, Any]:
    """Follow the job's server-sent events with a progress bar of calls done; the last status."""
    last: dict[str, Any] = {}
    with (
        click.progressbar(length=max(planned, 1), label="calls", show_pos=True) as bar,
        httpx.stream("GET", f"{gateway.url}/research/jobs/{job_id}/events", headers=gateway.headers, timeout=None) as r,
    ):
        event = ""
        for line in r.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "progress":
                status = json.loads(line[6:])
                bar.update(status["calls_done"] - last.get("calls_done", 0))
                last = status
    return gateway.call("GET", f"/jobs/{job_id}").json()  # type: ignore[no-any-return]


def _print_report(gateway: Gateway, job_id: str, save: Path | None) -> None:
    markdown = gateway.call("GET", f"/jobs/{job_id}/report.md").text
    if save is None:
        click.echo(markdown)
    else:
        save.write_text(markdown)
        click.echo(f"report saved to {save}")


@research.command("show")
@click.argument("job_id")
@click.option("--report", "report_format", type=click.Choice(["md", "json"]), default=None, help="Print the report.")
@click.option("--url", default=None, help="The gateway's /v1 URL (GLASSKEY_URL).")
@click.option("--key", default=None, help="The key that ran the job (GLASSKEY_KEY).")
def research_show(job_id: str, report_format: str | None, url: str | None, key: str | None) -> None:
    """A job's status, steps and spend; or its report."""
    gateway = Gateway(url, key)
    if report_format is not None:
        click.echo(gateway.call("GET", f"/jobs/{job_id}/report.{report_format}").text)
        return
    job = gateway.call("GET", f"/jobs/{job_id}").json()
    click.echo(
        f"{job['id']}  {job['status']}  step {job['step'] or '-'}  calls {job['calls_done']}/{job['calls_planned']}  "
        f"spent {format_usd(job['spent_micros'])} of at most {format_usd(job['confirmed_max_micros'])}"
    )
    click.echo(table(["step", "model", "status", "calls", "error"], [
        [s["name"], s["model"], s["status"], s["calls_planned"], s["error"]] for s in job["steps"]
    ]))  # fmt: skip
    if job["error"]:
        click.echo(job["error"])


@research.command("list")
@click.option("--url", default=None, help="The gateway's /v1 URL (GLASSKEY_URL).")
@click.option("--key", default=None, help="The key that ran the job (GLASSKEY_KEY).")
def research_list(url: str | None, key: str | None) -> None:
    """This key's jobs, newest first."""
    jobs = Gateway(url, key).call("GET", "/jobs").json()["data"]
    click.echo(table(["id", "status", "calls", "spent", "question"], [
        [j["id"], j["status"], f"{j['calls_done']}/{j['calls_planned']}", format_usd(j["spent_micros"]),
         j["question"][:60]]
        for j in jobs
    ]))  # fmt: skip


@research.command("cancel")
@click.argument("job_id")
@click.option("--url", default=None, help="The gateway's /v1 URL (GLASSKEY_URL).")
@click.option("--key", default=None, help="The key that ran the job (GLASSKEY_KEY).")
def research_cancel(job_id: str, url: str | None, key: str | None) -> None:
    """Stop a job: calls in flight are cancelled and their holds voided."""
    job = Gateway(url, key).call("POST", f"/jobs/{job_id}/cancel").json()
    click.echo(f"{job['id']} {job['status']}: spent {format_usd(job['spent_micros'])}")


@research.command("resume")
@click.argument("job_id")
@click.option("--url", default=None, help="The gateway's /v1 URL (GLASSKEY_URL).")
@click.option("--key", default=None, help="The key that ran the job (GLASSKEY_KEY).")
def research_resume(job_id: str, url: str | None, key: str | None) -> None:
    """Resume an unfinished job (after a crash) from its last answered call; no call is sent twice."""
    gateway = Gateway(url, key)
    job = gateway.call("POST", f"/jobs/{job_id}/resume").json()
    final = follow(gateway, job_id, job["calls_planned"])
    click.echo(f"{final['status']}: spent {format_usd(final['spent_micros'])}")
