"""The ``glasskey`` command, driven through click's runner against a SQLite database in tmp_path."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from glasskey.cli import main
from glasskey.demo import DEMO_MODELS
from glasskey.keys.service import list_keys
from glasskey.orgs.service import get_org, list_wallets
from glasskey.routing.routes import list_routes
from glasskey.services import build_services
from glasskey.settings import load_settings
from glasskey.store.tables import receipts

KEY_LINE = re.compile(r"^gk-[a-z0-9]{12}-[A-Za-z0-9]{40}$", re.MULTILINE)


@pytest.fixture
def run(env):
    runner = CliRunner()

    def invoke(*args: str, extra_env: dict[str, str] | None = None) -> Result:
        return runner.invoke(main, list(args), env={**env, **(extra_env or {})})

    return invoke


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


# --- demo ---------------------------------------------------------------------------------


def test_demo_seeds_and_prints_export_lines(tmp_path):
    data_dir = tmp_path / "demo"
    result = CliRunner().invoke(main, ["demo", "--no-serve", "--data-dir", str(data_dir), "--port", "8799"])
    out = ok(result)

    lines = out.splitlines()
    assert lines.count("export OPENAI_BASE_URL=http://127.0.0.1:8799/v1") == 2
    key_lines = [line for line in lines if re.fullmatch(r"export OPENAI_API_KEY=gk-[a-z0-9]{12}-[A-Za-z0-9]{40}", line)]
    assert len(key_lines) == 2
    assert any(re.fullmatch(r"export GLASSKEY_ADMIN_TOKEN=\S{16,}", line) for line in lines)

    services = build_services(load_settings(config_file=data_dir / "glasskey.toml", environ={}))
    try:
        with services.db.read() as conn:
            org = get_org(conn, "demo")
            # The demo's research job is charged to the routed wallet, like any request.
            spent = sum(r.charge_micros for r in conn.execute(select(receipts.c.charge_micros)))
            assert spent > 0
            assert {w.kind: w.balance.available_micros for w in list_wallets(conn, org.id)} == {
                "credit": 50_000_000,
                "routed": 50_000_000 - spent,
            }
            assert {r.model for r in list_routes(conn)} == set(DEMO_MODELS)
            assert sorted(k.name for k in list_keys(conn, org.id)) == ["demo-official", "demo-routed"]
    finally:
        services.db.dispose()


def test_demo_twice_reuses_its_settings_and_does_not_top_up_again(tmp_path):
    data_dir = tmp_path / "demo"
    runner = CliRunner()
    first = ok(runner.invoke(main, ["demo", "--no-serve", "--data-dir", str(data_dir)]))
    second = ok(runner.invoke(main, ["demo", "--no-serve", "--data-dir", str(data_dir)]))

    def admin_token(out: str) -> str:
        match = re.search(r"^export GLASSKEY_ADMIN_TOKEN=(\S+)$", out, re.MULTILINE)
        assert match
        return match.group(1)

    assert admin_token(first) == admin_token(second)
    config = ["--config", str(data_dir / "glasskey.toml")]
    wallets = ok(runner.invoke(main, [*config, "wallets", "show", "demo"]))
    assert re.search(r"^credit\s+\$50\.00\s+\$0\.00\s+\$50\.00$", wallets, re.MULTILINE)
    # Topped up once; less only the demo's research job (run once, on the first start).
    assert re.search(r"^routed\s+\$49\.99\d*\s+\$0\.00\s+\$49\.99\d*$", wallets, re.MULTILINE)
    # Both starts printed fresh keys, and all four are listed.
    assert ok(runner.invoke(main, [*config, "keys", "list", "--org", "demo"])).count("demo-") == 4


# --- settings -----------------------------------------------------------------------------


def test_a_misspelt_environment_variable_exits_2_naming_it(run):
    result = run("orgs", "list", extra_env={"GLASSKEY_PROT": "1"})
    assert result.exit_code == 2
    assert "GLASSKEY_PROT" in result.stderr
    assert "Traceback" not in result.output


def test_a_missing_config_file_exits_2(run, tmp_path):
    result = run("--config", str(tmp_path / "absent.toml"), "orgs", "list")
    assert result.exit_code == 2
    assert "absent.toml" in result.stderr


def test_settings_errors_never_print_secrets(run):
    result = run("orgs", "list", extra_env={"GLASSKEY_KEY_PEPPER": "short-pepper"})
    assert result.exit_code == 2
    assert "key_pepper" in result.stderr
    assert "short-pepper" not in result.output


# --- admin verbs --------------------------------------------------------------------------


def test_db_upgrade_prints_the_revision(run):
    assert re.search(r"revision \w+", ok(run("db", "upgrade")))


def test_orgs_create_and_list(run):
    assert "created org acme" in ok(run("orgs", "create", "acme"))
    assert "acme" in ok(run("orgs", "list"))
    duplicate = run("orgs", "create", "acme")
    assert duplicate.exit_code == 1
    assert "already exists" in duplicate.stderr


def test_keys_create_list_explain_revoke_round_trip(run):
    ok(run("orgs", "create", "acme"))
    created = run(
        "keys", "create", "--org", "acme", "--name", "research-bot", "--owner", "ana",
        "--model", "gpt-4o-mini", "--model", "claude-sonnet-4-5", "--settlement", "official",
        "--backups", "--budget-total", "12.50", "--budget-daily", "0.75", "--rpm", "30",
        "--expires", "2030-01-01T00:00:00Z",
    )  # fmt: skip
    out = ok(created)
    full_key = KEY_LINE.search(out)
    assert full_key
    assert "shown once" in created.stderr
    prefix = "-".join(full_key.group(0).split("-")[:2])

    listing = ok(run("keys", "list", "--org", "acme"))
    assert prefix in listing and "research-bot" in listing and "official" in listing
    assert full_key.group(0) not in listing

    explained = ok(run("keys", "explain", prefix))
    assert "official Credit" in explained
    assert "gpt-4o-mini: " in explained and "claude-sonnet-4-5: " in explained
    assert "$12.50" in explained and "$0.75" in explained
    assert "30 requests per minute" in explained
    assert "2030-01-01" in explained
    assert "/v1/receipts?status=failed" in explained
    assert "credit, $0.00 available" in explained
    assert full_key.group(0) not in explained

    raw = json.loads(ok(run("keys", "explain", prefix, "--json")))
    assert raw["budgets"]["total_micros"] == 12_500_000
    assert raw["budgets"]["daily_micros"] == 750_000
    assert raw["settlement"] == "official" and raw["backup_routes"] is True

    assert "revoked key research-bot" in ok(run("keys", "revoke", prefix))
    assert re.search(r"research-bot\s+\S+\s+acme\s+official\s+revoked", ok(run("keys", "list")))


def test_keys_create_rejects_money_it_cannot_represent(run):
    ok(run("orgs", "create", "acme"))
    result = run("keys", "create", "--org", "acme", "--name", "k", "--budget-total", "0.0000001")
    assert result.exit_code == 2
    assert "six decimals" in result.stderr
    result = run("keys", "create", "--org", "acme", "--name", "k", "--expires", "2030-01-01T00:00:00")
    assert result.exit_code == 2
    assert "time zone" in result.stderr


def test_keys_create_for_an_unknown_org_fails_with_a_message(run):
    result = run("keys", "create", "--org", "nope", "--name", "k")
    assert result.exit_code == 1
    assert "org nope does not exist" in result.stderr


def test_wallet_topup_replayed_with_its_idempotency_key_moves_money_once(run):
    ok(run("orgs", "create", "acme"))
    first = ok(run("wallets", "topup", "acme", "routed", "10.25", "--idempotency-key", "inv-1"))
    replay = ok(run("wallets", "topup", "acme", "routed", "10.25", "--idempotency-key", "inv-1"))
    assert "topped up: $10.25" in first
    assert "replayed" in replay

    shown = ok(run("wallets", "show", "acme"))
    assert re.search(r"^routed\s+\$10\.25\s+\$0\.00\s+\$10\.25$", shown, re.MULTILINE)
    assert re.search(r"^credit\s+\$0\.00\s+\$0\.00\s+\$0\.00$", shown, re.MULTILINE)

    reused = run("wallets", "topup", "acme", "routed", "99", "--idempotency-key", "inv-1")
    assert reused.exit_code == 1
    assert "already used" in reused.stderr


def test_receipts_list_on_an_empty_database(run):
    assert "No receipts." in ok(run("receipts", "list", "--limit", "5"))
    missing = run("receipts", "show", "req_missing")
    assert missing.exit_code == 1
    assert "does not exist" in missing.stderr


def test_models_set_price_overrides_the_catalog(run):
    out = ok(run("models", "set-price", "gpt-4o-mini", "--input", "0.20", "--output", "0.80", "--cached", "0.10"))
    assert "in $0.20 / out $0.80 / cached $0.10" in out
    assert re.search(
        r"^gpt-4o-mini\s+openai\s+chat\s+\$0\.20\s+\$0\.80\s+\$0\.10\s+.*override",
        ok(run("models", "list")),
        re.MULTILINE,
    )
