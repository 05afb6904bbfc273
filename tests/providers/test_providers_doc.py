"""docs/providers.md's parameter tables say what the code does: every best-effort row, and every
row of the Anthropic "Refused with 400" table, is checked against the translators and the split."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from glasskey.errors import ClientError
from glasskey.providers import anthropic_translate, gemini_translate
from glasskey.providers.anthropic_translate import to_messages_request
from glasskey.providers.best_effort import split_best_effort
from glasskey.providers.gemini_translate import chat_request

DOC = (Path(__file__).resolve().parents[2] / "docs" / "providers.md").read_text()
HELLO = [{"role": "user", "content": "Hello"}]
# Each best-effort parameter at a value that is not a no-op, as an ordinary client may send it.
SENT: dict[str, Any] = {
    "seed": 7,
    "user": "user-7",
    "safety_identifier": "person-7",
    "metadata": {"job": "nightly"},
    "store": True,
    "service_tier": "flex",
    "prompt_cache_key": "k",
}
# The no-op value of each that has one (OpenAI's default), accepted and not reported.
NO_OPS: dict[str, Any] = {"store": False, "service_tier": "auto", "metadata": {}}


def _section(start: str, end: str) -> str:
    begin = DOC.index(start)
    return DOC[begin : DOC.index(end, begin + len(start))]


def _table_rows(text: str) -> list[list[str]]:
    rows = [line for line in text.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


def _names(cell: str, *, asides: bool = True) -> set[str]:
    """The parameter names a cell lists, each backticked (``store: true`` names ``store``); without
    ``asides``, what stands in parentheses (values: "other than `auto`") is left out."""
    text = cell if asides else re.sub(r"\([^)]*\)", "", cell)
    return {match.split(":")[0] for match in re.findall(r"`([a-z_]+(?::[^`]*)?)`", text)}


def best_effort_table() -> dict[str, tuple[str, str]]:
    rows = _table_rows(_section("## Best-effort parameters", "\nParameters that change"))
    table = {}
    for provider_cell, honoured, dropped in rows:
        for provider in re.findall(r"`(\w+)`", provider_cell):
            table[provider] = (honoured, dropped)
    return table


def test_the_best_effort_table_names_every_provider_and_what_each_drops() -> None:
    table = best_effort_table()
    assert set(table) == {"openai", "openai_compatible", "simulated", "anthropic", "gemini"}
    for provider, (_honoured, dropped_cell) in table.items():
        body = {"model": "m", "messages": HELLO, **SENT}
        _, dropped = split_best_effort(provider, body, strict=False)
        documented = set() if dropped_cell == "none" else _names(dropped_cell, asides=False)
        assert set(dropped) == documented, provider


@pytest.mark.parametrize("provider", ["anthropic", "gemini"])
def test_what_the_table_says_is_honoured_is_never_dropped_and_no_op_values_pass(provider: str) -> None:
    honoured_cell, dropped_cell = best_effort_table()[provider]
    honoured = _names(honoured_cell)
    assert honoured and honoured.isdisjoint(_names(dropped_cell, asides=False))
    for name in honoured:
        assert split_best_effort(provider, {"model": "m", "messages": HELLO, name: SENT[name]}, strict=False)[1] == ()
    for name, value in NO_OPS.items():
        dropped = split_best_effort(provider, {"model": "m", "messages": HELLO, name: value}, strict=False)[1]
        assert (name in dropped) == (name == "metadata" and "`metadata` (any, even `{}`)" in dropped_cell), name


@pytest.mark.parametrize("name", sorted(SENT))
@pytest.mark.parametrize("provider", ["anthropic", "gemini"])
def test_each_dropped_parameter_is_a_400_under_strict_params_and_reaches_no_translator(
    provider: str, name: str
) -> None:
    body = {"model": "m", "messages": HELLO, name: SENT[name]}
    sent, dropped = split_best_effort(provider, body, strict=False)
    if name not in dropped:
        return  # honoured: the other test
    with pytest.raises(ClientError) as refused:
        split_best_effort(provider, body, strict=True)
    assert refused.value.param == name
    # What is left is accepted by the provider's translator: dropped, not refused.
    to_messages_request(sent, "claude") if provider == "anthropic" else chat_request(sent)


def anthropic_refused_rows() -> list[list[str]]:
    anthropic = _section("## `anthropic`: the Messages API", "### Response: Message")
    return _table_rows(_section_of(anthropic, "Refused with **400"))


def _section_of(text: str, start: str) -> str:
    begin = text.index(start)
    return text[begin : text.index("\n\n", text.index("| ---", begin))]


def test_the_anthropic_refused_table_lists_no_best_effort_parameter() -> None:
    listed = set().union(*(_names(row[0]) for row in anthropic_refused_rows()))
    assert listed.isdisjoint(anthropic_translate.BEST_EFFORT_NO_OPS), listed & set(
        anthropic_translate.BEST_EFFORT_NO_OPS
    )
    # Every parameter the translator refuses outright (not best effort) has its row.
    refused_outright = set(anthropic_translate._REFUSED) - set(anthropic_translate.BEST_EFFORT_NO_OPS)
    assert refused_outright <= listed, refused_outright - listed


# A value other than the documented accepted one, for each simple row of the table.
REFUSED_VALUES: dict[str, Any] = {
    "n": 2,
    "logprobs": True,
    "top_logprobs": 3,
    "presence_penalty": 0.5,
    "frequency_penalty": 0.5,
    "logit_bias": {"50256": -100},
    "modalities": ["text", "audio"],
    "response_format": {"type": "json_object"},
    "temperature": 1.5,
    "functions": [{"name": "f"}],
    "reasoning_effort": "low",
    "audio": {"voice": "alloy"},
    "prediction": {"type": "content", "content": "x"},
}


@pytest.mark.parametrize("name", sorted(REFUSED_VALUES))
def test_each_anthropic_refused_row_is_a_400_naming_it_and_never_dropped(name: str) -> None:
    listed = set().union(*(_names(row[0]) for row in anthropic_refused_rows()))
    assert name in listed
    body = {"model": "m", "messages": HELLO, name: REFUSED_VALUES[name]}
    sent, dropped = split_best_effort("anthropic", body, strict=False)
    assert dropped == () and sent == body
    with pytest.raises(ClientError) as refused:
        to_messages_request(sent, "claude")
    assert refused.value.param == name


def test_the_anthropic_refused_rows_accept_their_documented_values() -> None:
    accepted: dict[str, Any] = {"n": 1, "logprobs": False, "top_logprobs": 0, "presence_penalty": 0}
    accepted |= {"frequency_penalty": 0}
    accepted |= {"logit_bias": {}, "modalities": ["text"], "temperature": 1}
    request = to_messages_request({"model": "m", "messages": HELLO, **accepted}, "claude")
    assert set(request) == {"model", "messages", "max_tokens", "temperature"}  # no-ops are not sent


def test_gemini_says_its_best_effort_parameters_are_named_not_silently_accepted() -> None:
    gemini = _section("## `gemini`", "### Response: `GenerateContentResponse`")
    accepted = gemini[gemini.index("Accepted and not forwarded") :]
    accepted = accepted[: accepted.index("\n\n")]
    silently = _names(accepted.split("best-effort parameters at their no-op")[0])
    assert silently.isdisjoint(gemini_translate.BEST_EFFORT_NO_OPS), silently
    refused = _section_of(gemini, "#### Refused with 400")
    assert _names(refused).isdisjoint(gemini_translate.BEST_EFFORT_NO_OPS)


TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
# A request for each row of the Gemini "Refused with 400" table, and the param the 400 names.
GEMINI_REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "logprobs": ({"logprobs": True}, "logprobs"),
    "top_logprobs": ({"top_logprobs": 2}, "top_logprobs"),
    "logit_bias": ({"logit_bias": {"1": 5}}, "logit_bias"),
    "audio": ({"audio": {"voice": "alloy"}}, "audio"),
    "modalities": ({"modalities": ["text", "audio"]}, "modalities"),
    "parallel_tool_calls": ({"tools": [TOOL], "parallel_tool_calls": False}, "parallel_tool_calls"),
    "tools": ({"tools": [{"type": "custom", "custom": {"name": "f"}}]}, "tools"),
    "response_format": ({"response_format": {"type": "bogus"}}, "response_format"),
    "reasoning_effort": ({"reasoning_effort": "extreme"}, "reasoning_effort"),
    "functions": ({"functions": [{"name": "f"}]}, "functions"),
    "prediction": ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
    "web_search_options": ({"web_search_options": {}}, "web_search_options"),
    "verbosity": ({"verbosity": "low"}, "verbosity"),
}


@pytest.mark.parametrize("row", sorted(GEMINI_REFUSED))
def test_each_gemini_refused_row_is_a_400_and_never_dropped(row: str) -> None:
    assert row in _names(
        _section_of(_section("## `gemini`", "### Response: `GenerateContentResponse`"), "#### Refused")
    )
    fields, param = GEMINI_REFUSED[row]
    body = {"model": "m", "messages": HELLO, **fields}
    assert split_best_effort("gemini", body, strict=False) == (body, ())
    with pytest.raises(ClientError) as refused:
        chat_request(body)
    assert (refused.value.param or "").startswith(param), refused.value.message


def test_what_gemini_accepts_and_does_not_forward_is_accepted_and_not_reported() -> None:
    accepted: dict[str, Any] = {"logprobs": False, "modalities": ["text"], "parallel_tool_calls": True}
    accepted |= {"stream": True}
    accepted |= {"stream_options": {"include_usage": True}, **NO_OPS}
    messages = [{"role": "user", "content": "Hello", "name": "ana"}]
    body = {"model": "m", "messages": messages, **accepted}
    assert split_best_effort("gemini", body, strict=True) == (body, ())
    request = chat_request(body)
    assert "Hello" in str(request["contents"]) and "ana" not in str(request)
    assert not set(accepted) & set(request) and not set(accepted) & set(request.get("generationConfig", {}))
