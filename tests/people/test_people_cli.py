"""``glasskey users | members | tokens | audit``, through click's runner on a SQLite database in tmp_path."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pyotp
import pytest
from click.testing import CliRunner, Result

from conftest_helpers import TEST_ENCRYPTION_KEY
from glasskey.cli import main
from glasskey.cli.context import open_admin
from glasskey.people.totp import enable_totp, new_totp_secret, recovery_codes_left
from glasskey.people.users import get_user
from glasskey.settings import load_settings

PASSWORD = "a long passphrase 42"


def cli_env(data_dir: Path) -> dict[str, str]:
    return {
        "GLASSKEY_DATA_DIR": str(data_dir),
        "GLASSKEY_ADMIN_TOKEN": "admin-token-for-tests-0123456789",
        "GLASSKEY_KEY_PEPPER": "pepper-for-tests-0123456789abcdef",
        "GLASSKEY_ENCRYPTION_KEY": TEST_ENCRYPTION_KEY,
    }


@pytest.fixture
def run(tmp_path, monkeypatch):
    for name in [name for name in os.environ if name.startswith("GLASSKEY_")]:
        monkeypatch.delenv(name)
    env = cli_env(tmp_path)

    def invoke(*args: str, stdin: str | None = None) -> Result:
        return CliRunner().invoke(main, list(args), env=env, input=stdin)

    return invoke


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_accounts_members_tokens_and_the_audit_log_from_the_command_line(run):
    ok(run("orgs", "create", "acme"))
    created = ok(run("users", "create", "--email", "Owner@Acme.example", stdin=f"{PASSWORD}\n{PASSWORD}\n"))
    assert "owner@acme.example" in created and PASSWORD not in created.replace("Password", "")
    ok(run("users", "create", "--email", "ops@acme.example", "--operator", stdin=f"{PASSWORD}\n{PASSWORD}\n"))
    assert "operator" in ok(run("users", "list"))
    ok(run("members", "add", "--org", "acme", "--email", "owner@acme.example", "--role", "owner"))
    assert re.search(r"owner@acme\.example\s+usr_\w+\s+owner", ok(run("members", "list", "--org", "acme")))

    made = ok(run("tokens", "create", "--email", "owner@acme.example", "--org", "acme"))
    token = re.search(r"^gkp-[a-z0-9]{12}-[A-Za-z0-9]{40}$", made, re.MULTILINE)
    assert token is not None and "(owner," in made
    listed = ok(run("tokens", "list", "--email", "owner@acme.example"))
    assert token.group(0) not in listed and token.group(0)[:16] in listed
    ok(run("tokens", "revoke", token.group(0)[:16]))
    assert "revoked" in ok(run("tokens", "list", "--email", "owner@acme.example"))

    events = ok(run("audit", "list"))
    assert all(action in events for action in ("user.create", "member.add", "token.create", "token.revoke"))
    assert "intact" in ok(run("audit", "verify"))
    assert "credit wallet has nothing left" in ok(run("alerts", "list", "--org", "acme"))


def test_a_weak_password_is_refused_with_the_reason(run):
    result = run("users", "create", "--email", "a@acme.example", stdin="short\nshort\n")
    assert result.exit_code == 1 and "at least 12" in result.output


def test_removing_a_member_shows_the_plan_and_waits_for_a_yes(run):
    ok(run("orgs", "create", "acme"))
    ok(run("users", "create", "--email", "m@acme.example", stdin=f"{PASSWORD}\n{PASSWORD}\n"))
    ok(run("members", "add", "--org", "acme", "--email", "m@acme.example", "--role", "member"))
    declined = run("members", "remove", "--org", "acme", "--email", "m@acme.example", stdin="n\n")
    assert declined.exit_code == 1 and "remove the membership" in declined.output
    assert "m@acme.example" in ok(run("members", "list", "--org", "acme"))
    ok(run("members", "remove", "--org", "acme", "--email", "m@acme.example", "--yes"))
    assert "m@acme.example" not in ok(run("members", "list", "--org", "acme"))


def test_every_cli_change_is_audited_without_its_arguments(run):
    ok(run("orgs", "create", "acme"))
    made = ok(run("keys", "create", "--org", "acme", "--name", "nightly", "--owner", "cron"))
    key_id = re.search(r"\((key_\w+),", made)
    assert key_id is not None
    ok(run("keys", "revoke", key_id.group(1)))
    events = ok(run("audit", "list"))
    # Orgs and keys are recorded as the change they are (before → after,
    # tests/people/test_people_audit_changes.py), never as the bare verb with its arguments.
    assert "org.create" in events and "key.create" in events
    assert "cli orgs create" not in events and "cli keys create" not in events
    assert "key.revoke" in events and "nightly" not in events
    assert "cli audit list" not in events  # reading changes nothing


def test_the_operator_resets_a_lost_second_factor_and_it_is_audited(run, tmp_path, monkeypatch):
    ok(run("users", "create", "--email", "m@acme.example", stdin=f"{PASSWORD}\n{PASSWORD}\n"))
    assert run("users", "reset-totp", "m@acme.example").exit_code == 1  # already off: nothing to reset
    assert run("users", "reset-totp", "nobody@acme.example").exit_code == 1
    for name, value in cli_env(tmp_path).items():  # the CLI's own database, opened as the CLI opens it
        monkeypatch.setenv(name, value)
    admin = open_admin(load_settings())
    try:
        with admin.db.write() as conn:
            secret = new_totp_secret()
            user = get_user(conn, "m@acme.example")
            now = admin.clock()
            enable_totp(conn, user.id, pepper=admin.pepper, secret=secret,
                        code=pyotp.TOTP(secret).at(now), now=now)  # fmt: skip
        assert re.search(r"m@acme\.example\s+usr_\w+\s+on", ok(run("users", "list")))
        assert "m@acme.example is off" in ok(run("users", "reset-totp", "m@acme.example"))
        with admin.db.read() as conn:
            assert not get_user(conn, "m@acme.example").totp_enabled
            assert recovery_codes_left(conn, user.id) == 0
    finally:
        admin.db.dispose()
    assert re.search(r"user\.totp_reset\s+m@acme\.example\s+ok", ok(run("audit", "list")))
