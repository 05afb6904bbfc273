"""The CLI as a newcomer meets it: help everywhere, clear refusals, names in tables, settings found."""

from __future__ import annotations

import importlib
import re
import socket
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from gateway_fixtures import free_port
from glasskey.cli import main
from glasskey.cli.base import LAZY_COMMANDS, settings_file

KEY_LINE = re.compile(r"^gk-[a-z0-9]{12}-[A-Za-z0-9]{40}$", re.MULTILINE)


@pytest.fixture
def run(env):
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, list(args), env=env)

    return invoke


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def every_command() -> list[tuple[str, click.Command]]:
    for module, _ in LAZY_COMMANDS.values():
        importlib.import_module(module)
    found: list[tuple[str, click.Command]] = []

    def walk(prefix: str, command: click.Command) -> None:
        found.append((prefix, command))
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(f"{prefix} {name}", sub)

    for name, command in main.commands.items():
        walk(name, command)
    return found


def test_every_command_and_option_has_help_without_raw_markup():
    for path, command in every_command():
        assert command.help, f"`glasskey {path}` has no help"
        assert "``" not in command.help, f"`glasskey {path}` help shows RST markup"
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                assert param.help, f"`glasskey {path} {param.opts[0]}` has no help"


def test_the_lazy_command_list_matches_the_commands_it_loads():
    every_command()
    assert set(main.commands) == set(LAZY_COMMANDS)
    for name, (_, short_help) in LAZY_COMMANDS.items():
        assert main.commands[name].get_short_help_str(limit=200) == short_help


def test_a_bad_choice_is_an_error_listing_the_valid_ones(run):
    result = run("receipts", "list", "--status", "bogus")
    assert result.exit_code == 2
    assert "'succeeded'" in result.stderr and "'failed'" in result.stderr


def test_top_ups_must_be_positive(run):
    ok(run("orgs", "create", "acme"))
    for amount in ("-1", "0", "0.0000001"):
        result = run("wallets", "topup", "acme", "routed", amount)
        assert result.exit_code == 2, amount
        assert "AMOUNT_USD" in result.stderr, amount
    assert "positive" in run("wallets", "topup", "acme", "routed", "-1").stderr


def test_keys_list_shows_names_and_revoking_twice_says_so(run):
    ok(run("orgs", "create", "acme"))
    created = ok(run("keys", "create", "--org", "acme", "--name", "bot"))
    key = KEY_LINE.search(created)
    assert key
    prefix = "-".join(key.group(0).split("-")[:2])
    listing = ok(run("keys", "list"))
    assert re.search(rf"^bot\s+{prefix}\s+acme\s+routed\s+active", listing, re.MULTILINE)
    assert "org_" not in listing and "key_" not in listing
    assert "revoked key bot" in ok(run("keys", "revoke", prefix))
    again = ok(run("keys", "revoke", prefix))
    assert "already revoked" in again and "nothing changed" in again


def test_an_official_key_with_lower_cost_routes_is_refused(run):
    ok(run("orgs", "create", "acme"))
    result = run("keys", "create", "--org", "acme", "--name", "k", "--settlement", "official", "--lower-cost")
    assert result.exit_code == 1
    assert "lower-cost routes apply only to routed keys" in result.stderr


def test_keys_set_changes_every_field_the_admin_patch_can(run):
    ok(run("orgs", "create", "acme"))
    key = KEY_LINE.search(ok(run("keys", "create", "--org", "acme", "--name", "bot", "--budget-total", "5")))
    assert key
    prefix = "-".join(key.group(0).split("-")[:2])
    changes = (
        "--name", "bot2", "--owner", "ana", "--model", "gpt-4o-mini", "--settlement", "official", "--backups",
        "--strict-params", "--budget-total", "none", "--budget-daily", "1.5", "--rpm", "12",
        "--expires", "2031-01-01T00:00:00Z",
    )  # fmt: skip
    ok(run("keys", "set", prefix, *changes))
    explained = ok(run("keys", "explain", prefix, "--json"))
    for fragment in (
        '"name": "bot2"', '"owner": "ana"', '"settlement": "official"', '"backup_routes": true',
        '"strict_params": true', '"total_micros": null', '"daily_micros": 1500000', '"requests_per_minute": 12',
        "2031-01-01",
    ):  # fmt: skip
        assert fragment in explained, fragment
    ok(run("keys", "set", prefix, "--all-models", "--rpm", "none", "--expires", "none"))
    explained = ok(run("keys", "explain", prefix, "--json"))
    assert '"requests_per_minute": null' in explained and '"expires_at": null' in explained
    ok(run("keys", "set", prefix, "--no-strict-params"))
    assert '"strict_params": false' in ok(run("keys", "explain", prefix, "--json"))
    assert run("keys", "set", prefix).exit_code == 2  # nothing to change


def test_a_key_created_strict_says_in_its_explanation_that_best_effort_parameters_are_refused(run):
    ok(run("orgs", "create", "acme"))
    key = KEY_LINE.search(ok(run("keys", "create", "--org", "acme", "--name", "bot", "--strict-params")))
    assert key
    explained = ok(run("keys", "explain", "-".join(key.group(0).split("-")[:2])))
    assert "strict params:     on: a best-effort parameter" in explained and "is refused with a 400" in explained
    plain = KEY_LINE.search(ok(run("keys", "create", "--org", "acme", "--name", "lenient")))
    assert plain
    explained = ok(run("keys", "explain", "-".join(plain.group(0).split("-")[:2])))
    assert "strict params:     off: a best-effort parameter" in explained and "dropped_params" in explained


def test_the_cli_finds_the_demo_settings_in_the_data_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    ok(runner.invoke(main, ["demo", "--no-serve"], env={}))
    assert settings_file(None, {}) == Path("glasskey-data") / "glasskey.toml"
    # Nothing but what the demo printed: no --config, no GLASSKEY_KEY_PEPPER.
    assert "demo" in ok(runner.invoke(main, ["orgs", "list"], env={}))
    moved = tmp_path / "elsewhere"
    banner = ok(runner.invoke(main, ["demo", "--no-serve", "--data-dir", str(moved)], env={}))
    assert f"\nexport GLASSKEY_DATA_DIR={moved.resolve()}\nglasskey keys list\n" in banner  # works anywhere
    assert "demo-routed" in ok(runner.invoke(main, ["keys", "list"], env={"GLASSKEY_DATA_DIR": str(moved)}))


def test_without_a_settings_file_the_search_finds_nothing(tmp_path):
    assert settings_file(None, {"GLASSKEY_DATA_DIR": str(tmp_path)}) is None
    assert settings_file(None, {"GLASSKEY_CONFIG": "x.toml", "GLASSKEY_DATA_DIR": str(tmp_path)}) == (
        tmp_path.parent / "x.toml"
    ).relative_to(tmp_path.parent)
    explicit = tmp_path / "given.toml"
    assert settings_file(explicit, {"GLASSKEY_CONFIG": "other.toml"}) == explicit


def test_routes_health_needs_only_the_url_and_the_admin_token(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no settings file to find here
    port = free_port()
    result = CliRunner().invoke(
        main,
        ["routes", "health", "--url", f"http://127.0.0.1:{port}"],
        env={"GLASSKEY_ADMIN_TOKEN": "admin-token-for-tests-0123456789"},
    )
    assert result.exit_code == 1, result.output  # asked the server: no setting was missing
    assert f"is the gateway running at http://127.0.0.1:{port}?" in result.stderr


def test_the_demo_refuses_a_taken_port_before_printing_anything(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = CliRunner().invoke(main, ["demo", "--port", str(port), "--data-dir", str(tmp_path / "d")], env={})
    assert result.exit_code == 1
    assert result.stdout == ""
    assert f"port {port} is taken on 127.0.0.1: use --port" in result.stderr
    assert not (tmp_path / "d").exists()  # nothing seeded


def test_a_route_option_its_provider_does_not_read_is_refused(env) -> None:
    result = CliRunner().invoke(
        main,
        ["routes", "add", "--model", "gpt-4o-mini", "--provider", "simulated", "--settlement", "routed",
         "--upstream-model", "gpt-4o-mini", "--option", "fail_rate=1"],
        env=env,
    )  # fmt: skip
    assert result.exit_code == 1
    assert "unknown option(s) fail_rate for a simulated route" in result.stderr and "error_rate" in result.stderr
