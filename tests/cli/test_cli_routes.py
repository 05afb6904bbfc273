"""``glasskey routes``: adding, listing and changing routes, and asking a running gateway for health.

The admin verbs run against a SQLite database in tmp_path. ``routes health`` asks a real gateway
(uvicorn in a thread) built on the same data dir and settings as the CLI, since route health
lives in the server's memory, not in the database.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import pytest
from click.testing import CliRunner, Result

from gateway_fixtures import ServerThread, free_port
from glasskey.app import build_app
from glasskey.cli import main, render_health
from glasskey.routing.routes import get_route
from glasskey.services import Services, build_services
from glasskey.settings import load_settings

CANARY = "sk-secret-canary-123456"
ROUTE_ID = re.compile(r"^rt_\w+$")

KEY_LINE = re.compile(r"^gk-[a-z0-9]{12}-[A-Za-z0-9]{40}$", re.MULTILINE)


@pytest.fixture
def outputs() -> list[str]:
    """Everything the CLI printed in a test, on stdout and stderr."""
    return []


@pytest.fixture
def run(env, outputs):
    runner = CliRunner()

    def invoke(*args: str, extra_env: dict[str, str] | None = None) -> Result:
        result = runner.invoke(main, list(args), env={**env, **(extra_env or {})})
        outputs.append(result.output)
        return result

    return invoke


@pytest.fixture
def services(env) -> Iterator[Services]:
    built = build_services(load_settings(environ=env))
    yield built
    built.db.dispose()


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def add_route(run, *extra: str, settlement: str = "routed", model: str = "gpt-4o-mini") -> str:
    out = ok(
        run(
            "routes", "add", "--model", model, "--provider", "simulated", "--settlement", settlement,
            "--upstream-model", model, *extra,
        )
    )  # fmt: skip
    route_id = out.strip()
    assert ROUTE_ID.match(route_id), out
    return route_id


def listed(run, route_id: str, *args: str) -> list[str]:
    """The columns of one route's row in ``routes list``."""
    for line in ok(run("routes", "list", *args)).splitlines():
        if line.startswith(route_id):
            return line.split()
    raise AssertionError(f"{route_id} not listed")


# --- add and list ---------------------------------------------------------------------------


def test_a_route_without_prices_charges_the_models_official_price(run, services):
    route_id = add_route(run, settlement="official")

    with services.db.read() as conn:
        route = get_route(conn, route_id)
    assert (route.prices.input_per_mtok_micros, route.prices.output_per_mtok_micros) == (150_000, 600_000)
    assert route.costs == route.prices  # no cost given: no margin is claimed
    columns = listed(run, route_id)
    assert columns == [route_id, "gpt-4o-mini", "simulated", "official", "yes", "100", "1", "$0.15", "$0.60", "-"]


def test_a_route_takes_explicit_prices_costs_and_options(run, services):
    route_id = add_route(
        run,
        "--price-input", "0.09", "--price-output", "0.36", "--price-cached", "0.045",
        "--cost-input", "0.06", "--cost-output", "0.24",
        "--priority", "5", "--weight", "3",
        "--option", "timeout_first_byte_ms=4000", "--option", "fail_status=500", "--option", "retry_after=cheap",
    )  # fmt: skip

    with services.db.read() as conn:
        route = get_route(conn, route_id)
    assert route.prices.as_dict() == {"input": 90_000, "output": 360_000, "cached": 45_000}
    # A cost part left out takes the route's price for that part.
    assert route.costs.as_dict() == {"input": 60_000, "output": 240_000, "cached": 45_000}
    # Values that are not JSON are kept as text (an option the provider does not read is refused).
    assert route.options == {"timeout_first_byte_ms": 4000, "fail_status": 500, "retry_after": "cheap"}
    assert listed(run, route_id, "--model", "gpt-4o-mini")[5:9] == ["5", "3", "$0.09", "$0.36"]
    assert ok(run("routes", "list", "--model", "claude-sonnet-4-5")).strip() == "No routes."


def test_add_refuses_money_it_cannot_represent_and_bad_timeouts(run):
    too_precise = run("routes", "add", "--model", "gpt-4o-mini", "--provider", "simulated",
                      "--settlement", "routed", "--upstream-model", "m", "--price-input", "0.0000001")  # fmt: skip
    assert too_precise.exit_code == 2
    assert "six decimals" in too_precise.stderr
    zero_timeout = run("routes", "add", "--model", "gpt-4o-mini", "--provider", "simulated",
                       "--settlement", "routed", "--upstream-model", "m", "--option", "timeout_total_ms=0")  # fmt: skip
    assert zero_timeout.exit_code == 2
    assert "timeout_total_ms" in zero_timeout.stderr
    unknown = run("routes", "add", "--model", "gpt-9", "--provider", "simulated",
                  "--settlement", "routed", "--upstream-model", "m")  # fmt: skip
    assert unknown.exit_code == 1
    assert "gpt-9" in unknown.stderr
    assert "No routes." in ok(run("routes", "list"))


def test_a_credential_is_stored_but_never_printed(run, services, outputs):
    route_id = add_route(run, "--credential", CANARY)
    ok(run("routes", "list"))
    ok(run("routes", "set", route_id, "--priority", "7"))
    ok(run("routes", "set", route_id, "--credential", CANARY + "-rotated"))
    ok(run("routes", "disable", route_id))
    both = run("routes", "add", "--model", "gpt-4o-mini", "--provider", "simulated", "--settlement", "routed",
               "--upstream-model", "m", "--credential", CANARY, "--credential-env", "UPSTREAM_KEY")  # fmt: skip
    assert both.exit_code == 2

    with services.db.read() as conn:
        stored = get_route(conn, route_id).credential
    assert CANARY not in (stored or "")  # sealed at rest
    assert services.vault.open(stored) == CANARY + "-rotated"
    assert outputs and not any(CANARY in output for output in outputs)


def test_a_credential_from_the_environment_is_stored_as_a_reference(run, services):
    route_id = add_route(run, "--credential-env", "CHEAP_UPSTREAM_KEY")
    with services.db.read() as conn:
        assert services.vault.open(get_route(conn, route_id).credential) == "env:CHEAP_UPSTREAM_KEY"


# --- set and disable ------------------------------------------------------------------------


def test_set_changes_only_what_is_given(run, services):
    route_id = add_route(run, "--price-input", "0.10", "--option", "latency_ms=5", "--option", "fail_status=500")

    out = ok(run("routes", "set", route_id, "--priority", "3", "--price-output", "0.50",
                 "--option", "timeout_total_ms=30000", "--option", "fail_status=null"))  # fmt: skip
    assert f"updated route {route_id}" in out
    with services.db.read() as conn:
        route = get_route(conn, route_id)
    assert route.priority == 3 and route.weight == 1 and route.enabled
    assert route.prices.as_dict() == {"input": 100_000, "output": 500_000, "cached": 75_000}
    assert route.options == {"latency_ms": 5, "timeout_total_ms": 30000}

    nothing = run("routes", "set", route_id)
    assert nothing.exit_code == 2
    assert "nothing to change" in nothing.stderr


def test_set_disables_and_enables_and_disable_is_a_shortcut(run):
    route_id = add_route(run)
    ok(run("routes", "set", route_id, "--disable"))
    assert listed(run, route_id)[4] == "no"
    ok(run("routes", "set", route_id, "--enable"))
    assert listed(run, route_id)[4] == "yes"
    assert f"disabled route {route_id}" in ok(run("routes", "disable", route_id))
    assert listed(run, route_id)[4] == "no"


def test_set_forces_the_breaker_open_then_lifts_the_force(run, services):
    route_id = add_route(run)
    assert "breaker forced open" in ok(run("routes", "set", route_id, "--force", "open"))
    assert listed(run, route_id)[-1] == "open"
    with services.db.read() as conn:
        assert get_route(conn, route_id).forced_circuit == "open"

    assert "decides again" in ok(run("routes", "set", route_id, "--force", "none"))
    assert listed(run, route_id)[-1] == "-"
    with services.db.read() as conn:
        assert get_route(conn, route_id).forced_circuit is None


def test_an_unknown_route_is_a_one_line_error(run):
    for args in (("set", "rt_missing", "--priority", "1"), ("disable", "rt_missing")):
        result = run("routes", *args)
        assert result.exit_code == 1
        assert "rt_missing does not exist" in result.stderr
        assert "Traceback" not in result.output


# --- health, from the running gateway ---------------------------------------------------------


def test_health_asks_the_running_gateway_for_its_board(run, services, outputs):
    route_id = add_route(run, "--credential", CANARY)
    ok(run("orgs", "create", "acme"))
    ok(run("wallets", "topup", "acme", "routed", "5"))
    key = KEY_LINE.search(ok(run("keys", "create", "--org", "acme", "--name", "bot", "--settlement", "routed")))
    assert key

    with ServerThread(build_app(services)) as server:
        for _ in range(2):
            response = httpx.post(
                f"{server.base_url}/v1/chat/completions",
                headers={"Authorization": f"Bearer {key.group(0)}"},
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]},
            )
            assert response.status_code == 200, response.text

        board = ok(run("routes", "health", "--url", server.base_url))
        row = next(line for line in board.splitlines() if line.startswith(route_id))
        assert row.split()[:6] == [route_id, "gpt-4o-mini", "routed", "closed", "100.0%", "2"]
        assert re.search(r"\b2\s+\d+ ms\s+\d+ ms\s+-$", row)  # p50 and p99, and no errors
        assert board.splitlines()[0].split()[:4] == ["ROUTE", "MODEL", "SETTLEMENT", "CIRCUIT"]
        assert f"as the gateway at {server.base_url} saw it" in board

        raw = json.loads(ok(run("routes", "health", "--url", server.base_url, "--json")))
        [entry] = raw["data"]
        assert entry["route_id"] == route_id
        assert (entry["health"]["requests"], entry["health"]["successes"]) == (2, 2)

        # A force set by the CLI in the database shows on the server's board at once.
        ok(run("routes", "set", route_id, "--force", "open"))
        forced = ok(run("routes", "health", "--url", server.base_url))
        assert re.search(rf"^{route_id}\s+gpt-4o-mini\s+routed\s+open \(forced\)", forced, re.MULTILINE)

        refused = run("routes", "health", "--url", server.base_url,
                      extra_env={"GLASSKEY_ADMIN_TOKEN": "not-the-servers-token-0123456789abcdef"})  # fmt: skip
        assert refused.exit_code == 1
        assert "refused the admin token" in refused.stderr

    assert not any(CANARY in output for output in outputs)


def test_health_without_a_running_gateway_says_so_and_exits_1(run):
    url = f"http://127.0.0.1:{free_port()}"
    result = run("routes", "health", "--url", url)
    assert result.exit_code == 1
    assert f"is the gateway running at {url}?" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_health_defaults_to_the_public_url_setting(run):
    url = f"http://127.0.0.1:{free_port()}"
    result = run("routes", "health", extra_env={"GLASSKEY_PUBLIC_URL": url})
    assert result.exit_code == 1
    assert f"is the gateway running at {url}?" in result.stderr


def test_the_health_table_names_the_top_error_classes_and_an_open_breakers_cooldown():
    health = {
        "circuit": "open",
        "forced": None,
        "requests": 8,
        "successes": 2,
        "success_rate": 0.25,
        "errors_by_class": {"timeout": 1, "server_error": 4, "rate_limited": 1, "upstream_error": 0},
        "latency_ms": {"p50": 120, "p95": 800, "p99": 950},
        "reopens_in_seconds": 12.4,
    }
    row = {"route_id": "rt_a", "model": "gpt-4o-mini", "settlement": "routed", "enabled": True, "health": health}
    rendered = render_health({"data": [row], "window_seconds": 60.0}, "http://gw")
    line = rendered.splitlines()[1]
    assert "open (half-opens in 12s)" in line and "25.0%" in line and "120 ms  950 ms" in line
    assert line.endswith("server_error 4, rate_limited 1, timeout 1")
    assert rendered.endswith("as the gateway at http://gw saw it over the last 60s")


def test_rotate_encryption_key_reseals_every_credential_under_the_new_key(run, env, outputs):
    route_id = add_route(run, "--credential", CANARY)
    env_route = add_route(run, "--credential-env", "CHEAP_UPSTREAM_KEY")
    old_key = env["GLASSKEY_ENCRYPTION_KEY"]
    new_key = ok(run("routes", "generate-encryption-key")).strip()
    assert new_key != old_key and len(new_key) == 44

    # Only the new key configured: the old credentials open with none, and nothing changes.
    refused = run("routes", "rotate-encryption-key", extra_env={"GLASSKEY_ENCRYPTION_KEY": new_key})
    assert refused.exit_code == 1
    assert route_id in refused.stderr and "nothing was changed" in refused.stderr

    rotating = {"GLASSKEY_ENCRYPTION_KEY": new_key, "GLASSKEY_PREVIOUS_ENCRYPTION_KEYS": old_key}
    rotated = run("routes", "rotate-encryption-key", extra_env=rotating)
    assert rotated.exit_code == 0, rotated.output
    assert "re-sealed 2 route credential(s)" in rotated.stdout
    assert "previous_encryption_keys can now be removed" in rotated.stderr

    new_only = build_services(load_settings(environ={**env, "GLASSKEY_ENCRYPTION_KEY": new_key}))
    try:
        with new_only.db.read() as conn:
            assert new_only.vault.open(get_route(conn, route_id).credential) == CANARY
            assert new_only.vault.open(get_route(conn, env_route).credential) == "env:CHEAP_UPSTREAM_KEY"
    finally:
        new_only.db.dispose()
    # The key is printed once, by generate-encryption-key; neither it nor a credential ever again.
    assert not any(CANARY in output or new_key in output for output in outputs[3:])


def test_routes_refuse_internal_upstreams_and_out_of_range_numbers(run, env):
    strict = {"GLASSKEY_ALLOW_PRIVATE_UPSTREAMS": "false"}
    for base_url in ("http://169.254.169.254/", "http://user:pw@cheap.example.com/v1", "http://127.0.0.1:5432"):
        refused = run("routes", "add", "--model", "gpt-4o-mini", "--provider", "openai_compatible",
                      "--settlement", "routed", "--upstream-model", "m", "--base-url", base_url,
                      extra_env=strict)  # fmt: skip
        assert refused.exit_code == 1, refused.output
        assert "base_url refused" in refused.stderr
    route_id = add_route(run)
    assert run("routes", "set", route_id, "--base-url", "http://metadata.google.internal/").exit_code == 1
    for option in (("--priority", str(2**63)), ("--weight", str(2**63)), ("--priority", "-2000000")):
        assert run("routes", "set", route_id, *option).exit_code == 2
    assert run("routes", "set", route_id, "--price-output", "1000000000").exit_code == 1  # $1e9 per 1M tokens
    assert listed(run, route_id)[5:7] == ["100", "1"]
