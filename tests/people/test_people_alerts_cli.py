"""``glasskey alerts``: rules set and listed, the webhook with its secret printed once, a test delivery, the log."""

from __future__ import annotations

import os
import re

from click.testing import CliRunner

from alert_receiver import receiver
from conftest_helpers import TEST_ENCRYPTION_KEY
from glasskey.cli import main


def test_rules_webhook_test_and_delivery_log_from_the_command_line(tmp_path, monkeypatch):
    for name in [name for name in os.environ if name.startswith("GLASSKEY_")]:
        monkeypatch.delenv(name)
    env = {
        "GLASSKEY_DATA_DIR": str(tmp_path),
        "GLASSKEY_ADMIN_TOKEN": "admin-token-for-tests-0123456789",
        "GLASSKEY_KEY_PEPPER": "pepper-for-tests-0123456789abcdef",
        "GLASSKEY_ENCRYPTION_KEY": TEST_ENCRYPTION_KEY,
        "GLASSKEY_ALLOW_PRIVATE_UPSTREAMS": "true",
    }

    def run(*args: str):
        return CliRunner().invoke(main, list(args), env=env)

    def ok(*args: str) -> str:
        result = run(*args)
        assert result.exit_code == 0, (result.output, result.exception)
        return str(result.output)

    ok("orgs", "create", "acme")
    assert re.search(r"key_budget\s+keys\s+budget 50%, 80%, 100%\s+default", ok("alerts", "rules", "--org", "acme"))
    made = ok("alerts", "set", "--org", "acme", "--wallet", "routed", "--below-micros", "5000000")
    rule_id = made.split()[0]
    ok("alerts", "set", "--org", "acme", "--budget-percents", "90")
    rules = ok("alerts", "rules", "--org", "acme")
    assert re.search(rf"{rule_id}\s+wallet_balance\s+wallet:routed\s+balance below 5000000 micros\s+set", rules)
    assert re.search(r"key_budget\s+keys\s+budget 90%\s+set", rules)
    assert run("alerts", "set", "--org", "acme", "--budget-percents", "0").exit_code != 0
    assert "routed wallet has 0 micros" not in ok("alerts", "list", "--org", "acme")  # empty: said as empty
    with receiver([(500, b"oops")]) as hook:
        webhook = ok("alerts", "webhook", "--org", "acme", "--url", hook.url)
        secret = re.search(r"signing secret \(shown once, store it now\): (gkwh_\S+)", webhook)
        failed = run("alerts", "test", "--org", "acme")
    assert secret is not None
    assert failed.exit_code == 1 and "failed: 500 oops" in failed.output
    refused = run("alerts", "webhook", "--org", "acme", "--url", "http://169.254.169.254/")
    assert refused.exit_code != 0 and "metadata" in refused.output
    log = ok("alerts", "deliveries", "--org", "acme")
    assert re.search(r"alert\.test\s+failed\s+500 oops", log)
    ok("alerts", "set", "--org", "acme", "--failure-rate", "20")
    assert re.search(
        r"key_failure_rate\s+keys\s+20% failed over 15 min \(from 10 requests\)\s+set",
        ok("alerts", "rules", "--org", "acme"),
    )
    ok("alerts", "set", "--org", "acme", "--failure-rate", "50", "--off")
    assert re.search(r"key_failure_rate\s+keys\s+50% failed .*\s+off", ok("alerts", "rules", "--org", "acme"))
    ok("alerts", "unset", "--org", "acme", rule_id)
    assert "wallet:routed" in ok("alerts", "rules", "--org", "acme")  # back to the default
    assert "cli alerts set" in ok("audit", "list")
