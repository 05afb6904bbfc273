"""Demo mode: settings persisted once with owner-only permissions, seeding safe to repeat."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from glasskey.app import build_app
from glasskey.cli.base import settings_file
from glasskey.demo import (
    DEMO_MODELS,
    DemoResult,
    _cli_hint,
    _percent_of,
    demo_settings,
    format_demo_banner,
    seed_demo,
)
from glasskey.keys.service import authenticate, list_keys
from glasskey.orgs.service import list_orgs, list_wallets
from glasskey.pricing.catalog import Prices, get_model
from glasskey.routing.routes import list_routes
from glasskey.services import Services, build_services
from glasskey.settings import SettingsError

FIFTY_DOLLARS = 50_000_000


@pytest.fixture
def demo_services(tmp_path) -> Iterator[Services]:
    services = build_services(demo_settings(tmp_path / "data", "127.0.0.1", 8787, environ={}))
    yield services
    services.db.dispose()


def test_demo_settings_are_generated_once_and_readable_by_the_owner_only(tmp_path):
    data_dir = tmp_path / "data"
    first = demo_settings(data_dir, "127.0.0.1", 8787, environ={})
    path = data_dir / "glasskey.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.data_dir == data_dir
    assert len(first.admin_token.get_secret_value()) >= 32

    second = demo_settings(data_dir, "0.0.0.0", 9999, environ={})
    assert second.admin_token == first.admin_token
    assert second.key_pepper == first.key_pepper
    assert (second.host, second.port) == ("0.0.0.0", 9999)


def test_demo_settings_refuse_a_misspelt_environment_variable(tmp_path):
    with pytest.raises(SettingsError, match="GLASSKEY_PROT"):
        demo_settings(tmp_path, "127.0.0.1", 8787, environ={"GLASSKEY_PROT": "1"})


def test_routed_prices_round_down_to_whole_micros():
    assert _percent_of(Prices(1, 3, 7), 60) == Prices(0, 1, 4)
    assert _percent_of(Prices(150_000, 600_000, 75_000), 45) == Prices(67_500, 270_000, 33_750)


def test_seed_creates_a_funded_org_routes_and_two_working_keys(demo_services):
    result = seed_demo(demo_services)

    assert result.org.name == "demo"
    assert result.created_org
    assert [(w.kind, w.balance.available_micros) for w in result.wallets] == [
        ("credit", FIFTY_DOLLARS),
        ("routed", FIFTY_DOLLARS),
    ]
    assert result.base_url == "http://127.0.0.1:8787/v1"
    assert result.admin_token == demo_services.settings.admin_token.get_secret_value()
    with demo_services.db.read() as conn:
        for model in DEMO_MODELS:
            official = get_model(conn, model).official_prices
            by_settlement = {r.settlement: r for r in list_routes(conn, model)}
            assert set(by_settlement) == {"official", "routed"}
            assert by_settlement["official"].prices == by_settlement["official"].costs == official
            assert by_settlement["routed"].prices.output_per_mtok_micros == official.output_per_mtok_micros * 60 // 100
            assert by_settlement["routed"].costs.output_per_mtok_micros == official.output_per_mtok_micros * 45 // 100
            assert by_settlement["routed"].provider == "simulated"
            assert by_settlement["routed"].options == {"latency_ms": 0}
        for key in result.keys:
            found = authenticate(conn, pepper=demo_services.pepper, token=key.full_key, now=demo_services.clock())
            assert found.id == key.record.id
    policies = {key.name: key.record.policy for key in result.keys}
    assert policies["demo-official"].settlement == "official"
    assert not policies["demo-official"].backup_routes
    assert policies["demo-routed"].settlement == "routed"
    assert policies["demo-routed"].lower_cost_routes
    assert all(p.allowed_models == DEMO_MODELS for p in policies.values())


def test_seeding_again_reuses_the_org_without_a_second_top_up(demo_services):
    first = seed_demo(demo_services)
    second = seed_demo(demo_services)

    assert second.org == first.org
    assert not second.created_org
    with demo_services.db.read() as conn:
        assert [o.name for o in list_orgs(conn)] == ["demo"]
        assert [w.balance.posted_micros for w in list_wallets(conn, first.org.id)] == [FIFTY_DOLLARS, FIFTY_DOLLARS]
        assert len(list_routes(conn)) == 2 * len(DEMO_MODELS)
        assert len(list_keys(conn, first.org.id)) == 4
        # Keys printed by an earlier start keep working.
        for key in first.keys:
            authenticate(conn, pepper=demo_services.pepper, token=key.full_key, now=demo_services.clock())
    assert {k.full_key for k in first.keys}.isdisjoint(k.full_key for k in second.keys)


def test_a_demo_key_is_served_and_charged_from_its_wallet(demo_services):
    result = seed_demo(demo_services)
    routed_key = next(k for k in result.keys if k.name == "demo-routed")
    client = TestClient(build_app(demo_services))
    headers = {"Authorization": f"Bearer {routed_key.full_key}"}

    response = client.post(
        "/v1/chat/completions",
        headers=headers,
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]},
    )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"]

    explanation = client.get("/v1/key", headers=headers).json()
    assert explanation["settlement"] == "routed"
    assert 0 < FIFTY_DOLLARS - explanation["wallet"]["available_micros"] < 1_000


def _result_lines(result: DemoResult) -> list[str]:
    return format_demo_banner(result).splitlines()


def test_banner_prints_paste_ready_export_lines_for_each_key(demo_services):
    result = seed_demo(demo_services)
    lines = _result_lines(result)

    base_lines = [line for line in lines if line.startswith("export OPENAI_BASE_URL=")]
    key_lines = [line for line in lines if line.startswith("export OPENAI_API_KEY=")]
    assert base_lines == ["export OPENAI_BASE_URL=http://127.0.0.1:8787/v1"] * 2
    assert key_lines == [f"export OPENAI_API_KEY={k.full_key}" for k in result.keys]
    assert all(re.fullmatch(r"export OPENAI_API_KEY=gk-[a-z0-9]{12}-[A-Za-z0-9]{40}", line) for line in key_lines)
    assert f"export GLASSKEY_ADMIN_TOKEN={result.admin_token}" in lines
    assert 'curl $OPENAI_BASE_URL/key -H "Authorization: Bearer $OPENAI_API_KEY"' in lines
    assert any(line.startswith("curl $OPENAI_BASE_URL/chat/completions") for line in lines)
    assert any("from openai import OpenAI; client = OpenAI();" in line for line in lines)
    assert any("http://127.0.0.1:8787/admin/api/docs" in line for line in lines)
    # Everything else is a comment or a command, so the whole banner can be pasted into a shell.
    assert all(not line or line.startswith(("#", "export ", "curl ", "python ", "glasskey ")) for line in lines)


def test_the_printed_cli_lines_work_from_another_directory_with_a_data_dir_of_any_name(tmp_path):
    # Not ./glasskey-data, so the CLI cannot find the settings by itself: the banner must say how.
    data_dir = tmp_path / "my demo"
    services = build_services(demo_settings(data_dir, "127.0.0.1", 8787, environ={}))
    try:
        banner = format_demo_banner(seed_demo(services))
    finally:
        services.db.dispose()
    lines = banner.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# admin CLI"))
    commands = [line for line in lines[start:] if line.startswith(("export GLASSKEY_DATA_DIR=", "glasskey "))]
    assert len(commands) == 2, banner
    assert "by itself" not in banner and "without the export" not in banner
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GLASSKEY_", "OPENAI_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # where `glasskey` is
    ran = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "\n".join(commands)], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stderr
    assert "demo-routed" in ran.stdout and "demo-official" in ran.stdout


def test_the_data_dir_found_without_the_export_is_said_only_where_it_is_true(tmp_path, monkeypatch):
    data_dir = tmp_path / "glasskey-data"
    demo_settings(data_dir, "127.0.0.1", 8787, environ={})
    assert f"#   (from {tmp_path.resolve()} it finds ./glasskey-data without the export)" in _cli_hint(data_dir)
    monkeypatch.chdir(tmp_path)
    assert settings_file(None, {}) == Path("glasskey-data") / "glasskey.toml"  # as the line says
