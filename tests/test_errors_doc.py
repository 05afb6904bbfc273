"""docs/errors.md lists every error ``code`` glasskey can return, and the README's table agrees."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "glasskey"
DOC = (ROOT / "docs" / "errors.md").read_text()
README = (ROOT / "README.md").read_text()

LITERAL = re.compile(r"""\bcode\s*=\s*["']([a-z0-9_]+)["']""")
FORMATTED = re.compile(r"""\bcode\s*=[^\n]*?(f"[^"]*")""")
# Codes built from a value, with what they can become: a new f-string code fails the test until
# it is written out here and in docs/errors.md.
FORMATTED_CODES = {
    'f"{label}_budget_exceeded"': ["total_budget_exceeded", "daily_budget_exceeded"],
    'f"upstream_{error.status}"': ["upstream_{status}"],
    'f"upstream_{status}"': ["upstream_{status}"],
    'f"http_{exc.status_code}"': ["http_{status}"],
}


def codes_in_source() -> tuple[set[str], set[str]]:
    literal: set[str] = set()
    formatted: set[str] = set()
    for path in SOURCE.rglob("*.py"):
        text = path.read_text()
        literal.update(LITERAL.findall(text))
        formatted.update(FORMATTED.findall(text))
    return literal, formatted


def documented_codes() -> set[str]:
    """The first cell of every row of the tables whose first column is ``code`` (other tables of the
    page, such as parameter bounds, are not lists of codes)."""
    codes: set[str] = set()
    in_codes = False
    for line in DOC.splitlines():
        if not line.startswith("|"):
            in_codes = False
        elif line.startswith("| code |"):
            in_codes = True
        elif in_codes and (found := re.match(r"^\| `([a-z0-9_{}]+)` \|", line)):
            codes.add(found.group(1))
    return codes


def test_every_code_in_the_source_is_documented() -> None:
    literal, formatted = codes_in_source()
    assert {"model_not_found", "wrong_model_kind", "key_revoked", "no_route"} <= literal  # the scan works
    assert formatted == set(FORMATTED_CODES), "a new formatted code: list its values here and in docs/errors.md"
    assert "model_not_found" in documented_codes()  # the page's tables were read
    expected = literal | {code for codes in FORMATTED_CODES.values() for code in codes}
    missing = sorted(expected - documented_codes())
    assert not missing, f"codes missing from docs/errors.md: {missing}"


def test_the_doc_lists_no_code_the_source_cannot_return() -> None:
    literal, _ = codes_in_source()
    expected = literal | {code for codes in FORMATTED_CODES.values() for code in codes}
    assert documented_codes() - expected == set()


def test_the_readme_table_states_the_model_statuses_of_the_code() -> None:
    row = next(line for line in README.splitlines() if line.startswith("| `model` |"))
    assert "404" in row and "403" in row and "400" in row and "wrong_model_kind" in row
    assert "docs/errors.md" in README
