"""Thinking, from a native endpoint's request to the route that serves it: carried, or named.

The Anthropic and Gemini endpoints translate a request once into the OpenAI chat body every route
is served from (``anthropic_inbound.to_chat_body``, ``gemini_inbound.chat_body``). Thinking goes
in it the way the gemini provider takes it exactly: ``extra_body.google.thinking_config`` (the
extension Google's own OpenAI-compatible endpoint reads: the budget and whether thought summaries
come back) and, for an effort level, ``reasoning_effort``. ``for_route`` then takes out, for the
route about to be called, what its provider cannot take, and names it as the caller wrote it, for
the receipt's ``dropped_params`` and ``x-glasskey-dropped-params`` (or a 400 under
``strict_params``: ``Run.body_for``). Nothing here touches a body from ``/v1/chat/completions``:
its caller's ``extra_body`` and ``reasoning_effort`` go to the upstream as they are.
"""

from __future__ import annotations

from typing import Any

# The inbound APIs as receipts name them (``anthropic_api.ENDPOINT``, ``gemini_api.GENERATE_ENDPOINT``).
ANTHROPIC_ENDPOINT = "anthropic.messages"
GEMINI_ENDPOINT = "gemini.generate_content"
INCLUDE_THOUGHTS = "generationConfig.thinkingConfig.includeThoughts"


def for_route(endpoint: str, provider: str, body: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """``body`` for a route of ``provider``, without the thinking settings it cannot take, and their names.

    From the Anthropic endpoint, a ``gemini`` route takes ``thinking`` (as its exact budget) and an
    effort; with both, the budget is ``thinking``'s and the effort is named. Other routes (``openai``,
    ``openai_compatible``, ``simulated``) take neither: ``reasoning_effort`` is refused by models that
    do not reason, and the catalog does not say which do. From the Gemini endpoint, a route that is not
    Gemini's keeps the ``reasoning_effort`` the budget rounds to, but cannot be asked for thought
    summaries: ``includeThoughts: true`` is named. (Anthropic routes get the caller's own body.)
    """
    thinking = body.get("extra_body")
    if endpoint == ANTHROPIC_ENDPOINT:
        effort = body.get("reasoning_effort")
        if provider == "gemini":
            if thinking is not None and effort is not None:
                return _without(body, "reasoning_effort"), ("output_config.effort",)
            return body, ()
        names = (("thinking",) if thinking is not None else ()) + (
            ("output_config.effort",) if effort is not None else ()
        )
        return _without(body, "extra_body", "reasoning_effort"), names
    if endpoint == GEMINI_ENDPOINT and provider != "gemini" and thinking is not None:
        asked = thinking["google"]["thinking_config"].get("include_thoughts") is True
        return _without(body, "extra_body"), ((INCLUDE_THOUGHTS,) if asked else ())
    return body, ()


def google_thinking(config: dict[str, Any]) -> dict[str, Any]:
    """``extra_body`` carrying a ``thinking_config`` (``thinking_budget``, ``include_thoughts``)."""
    return {"extra_body": {"google": {"thinking_config": config}}} if config else {}


def _without(body: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: value for name, value in body.items() if name not in names}
