"""docs/people.md's status table ("What exists today, and what does not") against the code.

Each CLI verb the table names is a command ``glasskey`` has, and the alerts row names every webhook
event the code sends, with none of them under "Not done" (it once said an event when an alert
clears was missing, while ``alert.cleared`` was sent).
"""

from __future__ import annotations

import re
from pathlib import Path

import click

from glasskey.alerts.firing import CLEARED, FIRED, TEST
from glasskey.cli import main

PEOPLE_DOC = Path(__file__).parents[2] / "docs" / "people.md"


def _status_rows() -> list[str]:
    text = PEOPLE_DOC.read_text()
    table = text.split("## What exists today, and what does not", 1)[1].split("\n## ", 1)[0]
    return [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| part")]


def test_every_cli_verb_the_status_table_names_exists():
    named = [
        (group, verb)
        for row in _status_rows()
        for group, verbs in re.findall(r"`glasskey (\w+) ([\w/-]+)", row)
        for verb in verbs.split("/")
    ]
    assert ("alerts", "deliveries") in named and ("users", "reset-totp") in named
    context = click.Context(main)
    missing = []
    for group, verb in named:
        command = main.get_command(context, group)
        if not isinstance(command, click.Group) or command.get_command(context, verb) is None:
            missing.append(f"glasskey {group} {verb}")
    assert missing == []


def test_the_alerts_row_names_every_webhook_event_and_none_as_not_done():
    [row] = [row for row in _status_rows() if row.startswith("| alerts |")]
    done, _, not_done = row.partition("**Not done**")
    assert all(f"`{event}`" in done for event in (FIRED, CLEARED, TEST)), done
    assert "clear" not in not_done and "event" not in not_done, not_done
