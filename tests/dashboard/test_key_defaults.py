"""One default everywhere: a key made with nothing chosen is the same key on every surface.

The CLI's options, the admin API's body, the operator's form and a person's own form
(``/me/keys/new``) all start from ``keys.policy.DEFAULT_POLICY``.
"""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from glasskey.admin.keys import PolicyBody
from glasskey.cli.keys import keys_create
from glasskey.dashboard import build_dashboard
from glasskey.keys.policy import DEFAULT_POLICY
from glasskey.people.holders import keys_of
from people_helpers import PASSWORD, make_team

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
CHOICES = ("settlement", "lower_cost_routes", "backup_routes", "strict_params")
CHECKBOXES = ("lower_cost_routes", "backup_routes", "strict_params")


def _defaults() -> dict[str, object]:
    return {name: getattr(DEFAULT_POLICY, name) for name in CHOICES}


def _field(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]+)"', html)
    assert found is not None, name
    return found.group(1)


def _form_choices(html: str) -> dict[str, object]:
    """The settlement and checkboxes a blank form would send, as a browser reads the page."""
    shown: dict[str, object] = {}
    for name in CHECKBOXES:
        boxes = re.findall(rf'<input type="checkbox" name="{name}"[^>]*>', html)
        assert len(boxes) == 1, (name, boxes)
        shown[name] = " checked" in boxes[0]
    radio = re.findall(r'<input type="radio" name="settlement" value="(\w+)" checked>', html)
    option = re.findall(r'<option value="(\w+)" selected>', html)
    [shown["settlement"]] = radio or option
    return shown


def _sign_in(client: TestClient, email: str | None) -> None:
    page = client.get("/signin").text
    sent = {"email": email, "password": PASSWORD} if email else {"admin_token": ADMIN_TOKEN}
    answer = client.post("/signin", data={"csrf_token": _field(page, "csrf_token"), **sent})
    assert answer.status_code == 303, answer.text


def test_the_cli_and_the_admin_api_default_to_the_one_default_policy():
    cli = {option.name: option.default for option in keys_create.params}
    assert {
        "settlement": cli["settlement"],
        "lower_cost_routes": cli["lower_cost"],
        "backup_routes": cli["backups"],
        "strict_params": cli["strict_params"],
    } == _defaults()
    body = PolicyBody()
    assert {name: getattr(body, name) for name in CHOICES} == _defaults()


def test_both_dashboard_forms_start_from_the_one_default_policy(services):
    with services.db.write() as conn:
        make_team(conn, "acme")
    with TestClient(build_dashboard(services), follow_redirects=False) as client:
        _sign_in(client, None)
        assert _form_choices(client.get("/keys/new").text) == _defaults()
    with TestClient(build_dashboard(services), follow_redirects=False) as client:
        _sign_in(client, "member@acme.example")
        assert _form_choices(client.get("/me/keys/new").text) == _defaults()


def test_a_persons_blank_form_makes_the_default_key_and_keeps_the_boxes_as_sent(services):
    with services.db.write() as conn:
        acme = make_team(conn, "acme")
    with TestClient(build_dashboard(services), follow_redirects=False) as client:
        _sign_in(client, "member@acme.example")
        form = client.get("/me/keys/new").text
        sent = {"csrf_token": _field(form, "csrf_token"), "nonce": _field(form, "nonce"), "models_mode": "all"}
        sent.update({name: "on" for name, ticked in _form_choices(form).items() if ticked is True})
        sent["settlement"] = str(_form_choices(form)["settlement"])
        # A refused form is shown again with the boxes as they were sent, not re-ticked.
        refused = client.post("/me/keys/new", data={**sent, "name": "bot", "rpm_limit": "lots", "backup_routes": "on"})
        assert refused.status_code == 400
        assert _form_choices(refused.text) == {**_defaults(), "backup_routes": True}
        made = client.post("/me/keys/new", data={**sent, "name": "bot"})
        assert made.status_code == 201, made.text
    with services.db.read() as conn:
        [(key, _holder)] = keys_of(conn, acme.org_id, acme.member.id)
    assert {name: getattr(key.policy, name) for name in CHOICES} == _defaults()
