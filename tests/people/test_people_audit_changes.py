"""Every change is one audit event naming who, the org, the target and the fields it changed (before →
after), whichever surface made it: the admin API, the dashboard or the CLI; HTTP ones also name the
address and the request (its x-request-id). Secrets are never in the log."""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from conftest_helpers import TEST_ENCRYPTION_KEY, TEST_KEY_PEPPER
from glasskey.app import build_app
from glasskey.cli import main
from glasskey.cli.context import open_admin
from glasskey.people.audit import list_events, verify
from glasskey.settings import load_settings
from people_api import ADMIN, admin_client, org_with_tokens
from people_helpers import PASSWORD, make_team

CREDENTIAL = "sk-upstream-secret-0123456789abcdef"


def _by_request(events: list[dict[str, Any]], request_id: str) -> dict[str, Any]:
    """The one event a request wrote."""
    found = [event for event in events if event["request_id"] == request_id]
    assert len(found) == 1, found
    return found[0]


def test_every_change_through_the_api_names_target_org_before_after_address_and_request(services):
    acme = org_with_tokens(services, "acme")
    org_id = acme.team.org_id
    client = admin_client(services)
    answers: dict[str, Any] = {}

    def send(name: str, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = client.request(method, path, json=body, headers=ADMIN)
        assert answer.status_code < 300, answer.text
        answers[name] = answer
        result: dict[str, Any] = answer.json()
        return result

    key = send("key.create", "POST", "/keys", {"org_id": org_id, "name": "ci"})
    send("key.update", "PATCH", f"/keys/{key['id']}", {"budget_total_micros": 5_000_000})
    send("key.revoke", "POST", f"/keys/{key['id']}/revoke", {})
    route = send(
        "route.create",
        "POST",
        "/routes",
        {
            "model": "gpt-4o-mini",
            "provider": "openai_compatible",
            "base_url": "https://cheap.example.com/v1",
            "upstream_model": "gpt-4o-mini",
            "settlement": "routed",
            "credential": CREDENTIAL,
            "price_per_mtok_micros": {"input": 150_000, "output": 600_000, "cached": 75_000},
            "cost_per_mtok_micros": {"input": 100_000, "output": 400_000, "cached": 50_000},
        },
    )
    send("route.update", "PATCH", f"/routes/{route['id']}", {"priority": 7})
    send("breaker", "POST", f"/routes/{route['id']}/breaker", {"state": "open"})
    send("wallet.topup", "POST", f"/orgs/{org_id}/wallets/credit/topups", {"amount_micros": 2_500_000})
    send("org.limits", "PUT", f"/orgs/{org_id}/limits", {"rpm_max": 60})
    send("member.role", "PATCH", f"/orgs/{org_id}/members/{acme.team.viewer.id}", {"role": "member"})
    made = send("org.create", "POST", "/orgs", {"name": "globex"})
    price = {"input": 200_000, "output": 800_000, "cached": 100_000}
    send("model.price", "PUT", "/models/gpt-4o-mini/price", {"price_per_mtok_micros": price})
    with services.db.read() as conn:
        events = list_events(conn, limit=200)
        assert verify(conn) == []
    assert CREDENTIAL not in json.dumps(events) and key["key"] not in json.dumps(events)
    seen = {}
    for action, answer in answers.items():
        event = _by_request(events, answer.headers["x-request-id"])
        assert (
            event["action"] == action.replace("breaker", "route.update")
            and event["actor"] == "operator"
            and event["address"] == "testclient"
        )
        seen[action] = event
    assert seen["key.create"]["target"] == f"key:{key['id']}" and seen["key.create"]["org_id"] == org_id
    assert seen["key.create"]["after"]["name"] == "ci" and "key" not in seen["key.create"]["after"]
    update = seen["key.update"]
    assert (update["org_id"], update["target"]) == (org_id, f"key:{key['id']}")
    assert (update["before"], update["after"]) == ({"budget_total_micros": None}, {"budget_total_micros": 5_000_000})
    revoke = seen["key.revoke"]
    assert revoke["before"]["status"] == "active" and revoke["after"]["status"] == "revoked"
    assert seen["route.create"]["target"] == f"route:{route['id']}"
    assert seen["route.update"]["before"] == {"priority": 100} and seen["route.update"]["after"] == {"priority": 7}
    forced = seen.pop("breaker")
    assert (forced["before"], forced["after"]) == ({"forced_circuit": None}, {"forced_circuit": "open"})
    topup = seen["wallet.topup"]
    assert (topup["org_id"], topup["target"]) == (org_id, f"wallet:{org_id}/credit")
    assert topup["before"] == {"posted_micros": 0}
    assert topup["after"]["posted_micros"] == topup["after"]["amount_micros"] == 2_500_000
    limits = seen["org.limits"]
    assert (limits["org_id"], limits["before"], limits["after"]) == (org_id, {"rpm_max": None}, {"rpm_max": 60})
    created = seen["org.create"]
    assert (created["org_id"], created["target"], created["after"]["name"]) == (
        made["id"],
        f"org:{made['id']}",
        "globex",
    )
    priced = seen["model.price"]
    assert priced["target"] == "model:gpt-4o-mini" and priced["after"]["input"] == 200_000
    assert priced["before"]["input"] != 200_000
    role = seen["member.role"]
    assert (role["target"], role["before"], role["after"]) == (
        f"member:{acme.team.viewer.id}",
        {"role": "viewer"},
        {"role": "member"},
    )


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def test_a_dashboard_change_is_one_event_with_its_request_id_and_sign_in_names_its_request(services):
    with services.db.write() as conn:
        acme = make_team(conn, "acme")
    with TestClient(build_app(services), follow_redirects=False) as client:
        data = {"csrf_token": _csrf(client.get("/signin").text), "email": "owner@acme.example", "password": PASSWORD}
        signed_in = client.post("/signin", data=data)
        assert signed_in.status_code == 303
        csrf = _csrf(client.get("/members").text)
        saved = client.post("/limits", data={"csrf_token": csrf, "rpm": "5", "settlements": "routed"})
        role = client.post(f"/members/{acme.viewer.id}/role", data={"csrf_token": csrf, "role": "member"})
    assert saved.status_code == role.status_code == 303
    with services.db.read() as conn:
        events = list_events(conn, limit=50)
    limits = _by_request(events, saved.headers["x-request-id"])
    assert (limits["action"], limits["org_id"], limits["actor"]) == ("org.limits", acme.org_id, acme.owner.id)
    assert limits["address"] == "testclient" and limits["target"] == f"org:{acme.org_id}"
    assert limits["before"] == {"rpm_max": None, "settlements": None}
    assert limits["after"] == {"rpm_max": 5, "settlements": ["routed"]}
    changed = _by_request(events, role.headers["x-request-id"])
    assert (changed["action"], changed["before"], changed["after"]) == (
        "member.role",
        {"role": "viewer"},
        {"role": "member"},
    )
    assert not any(event["action"].startswith("POST ") for event in events)  # not recorded twice
    signin = _by_request(events, signed_in.headers["x-request-id"])
    assert signin["action"] == "signin" and signin["actor"] == acme.owner.id


@pytest.fixture
def cli(tmp_path, monkeypatch):
    for name in [name for name in os.environ if name.startswith("GLASSKEY_")]:
        monkeypatch.delenv(name)
    env = {
        "GLASSKEY_DATA_DIR": str(tmp_path),
        "GLASSKEY_ADMIN_TOKEN": "admin-token-for-tests-0123456789",
        "GLASSKEY_KEY_PEPPER": TEST_KEY_PEPPER,
        "GLASSKEY_ENCRYPTION_KEY": TEST_ENCRYPTION_KEY,
    }

    def run(*args: str) -> str:
        result = CliRunner().invoke(main, list(args), env={**env, "UPSTREAM_KEY": CREDENTIAL})
        assert result.exit_code == 0, result.output
        return result.output

    def events() -> list[dict[str, Any]]:
        admin = open_admin(load_settings(environ=env))
        try:
            with admin.db.read() as conn:
                assert verify(conn) == []
                return list_events(conn, limit=100)
        finally:
            admin.db.dispose()

    return run, events


def test_every_change_through_the_cli_names_the_key_org_and_before_after(cli):
    run, events = cli
    run("orgs", "create", "acme")
    made = run("keys", "create", "--org", "acme", "--name", "ci")
    key_id = re.search(r"\((key_\w+),", made)
    assert key_id is not None
    run("keys", "set", key_id.group(1), "--budget-total", "5")
    run("keys", "revoke", key_id.group(1))
    route_id = run(
        "routes", "add", "--model", "gpt-4o-mini", "--provider", "simulated", "--settlement", "routed",
        "--upstream-model", "gpt-4o-mini", "--credential-env", "UPSTREAM_KEY",
    ).split()[0]  # fmt: skip
    run("routes", "set", route_id, "--priority", "7")
    run("wallets", "topup", "acme", "credit", "2.5")
    run("models", "set-price", "gpt-4o-mini", "--input", "0.2", "--output", "0.8", "--cached", "0.1")
    run("routes", "rotate-encryption-key")
    found = {event["action"]: event for event in events()}
    # Each verb's own event, never a bare "cli keys set".
    assert [action for action in found if action.startswith("cli ")] == []
    assert found["org.create"]["after"]["name"] == "acme" and found["org.create"]["target"].startswith("org:")
    price = found["model.price"]
    assert price["target"] == "model:gpt-4o-mini" and price["after"]["input"] == 200_000
    assert price["before"]["input"] != 200_000 and set(price["after"]) >= {"input", "output", "cached"}
    assert found["vault.reseal"]["after"] == {"route_credentials": 1, "webhook_secrets": 0}
    assert CREDENTIAL not in json.dumps(list(found.values()))
    for action in ("key.create", "key.update", "key.revoke", "route.create", "route.update", "wallet.topup"):
        assert found[action]["actor"] == "operator" and found[action]["address"] == "cli", action
    budget = found["key.update"]
    org_id = found["key.create"]["org_id"]
    assert org_id and budget["org_id"] == org_id and budget["target"] == f"key:{key_id.group(1)}"
    assert (budget["before"], budget["after"]) == ({"budget_total_micros": None}, {"budget_total_micros": 5_000_000})
    assert found["key.revoke"]["after"]["status"] == "revoked"
    assert found["route.create"]["target"] == f"route:{route_id}"
    assert (found["route.update"]["before"], found["route.update"]["after"]) == ({"priority": 100}, {"priority": 7})
    topup = found["wallet.topup"]
    assert topup["org_id"] == org_id and topup["target"] == f"wallet:{org_id}/credit"
    assert (topup["before"], topup["after"]["posted_micros"], topup["after"]["amount_micros"]) == (
        {"posted_micros": 0},
        2_500_000,
        2_500_000,
    )
