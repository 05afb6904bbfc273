"""Best-effort parameters are honoured where a provider can, else left out and named; strict_params refuses."""

from __future__ import annotations

from typing import Any

import pytest

from glasskey.errors import ClientError
from glasskey.providers.anthropic_translate import to_messages_request
from glasskey.providers.best_effort import dropped_params_header, is_strict, split_best_effort
from glasskey.providers.gemini_translate import chat_request

HELLO = [{"role": "user", "content": "Hello"}]
ORDINARY: dict[str, Any] = {  # what an ordinary OpenAI client may send
    "model": "m",
    "messages": HELLO,
    "seed": 42,
    "user": "user-7",
    "service_tier": "priority",
    "store": True,
    "metadata": {"job": "nightly"},
}


def test_anthropic_drops_what_it_cannot_honour_and_maps_the_user() -> None:
    with pytest.raises(ClientError, match="seed"):
        to_messages_request(ORDINARY, "claude")  # what the translator alone says: today's 400
    body, dropped = split_best_effort("anthropic", ORDINARY, strict=False)
    assert dropped == ("seed", "service_tier", "store", "metadata")
    request = to_messages_request(body, "claude")
    assert request["metadata"] == {"user_id": "user-7"}  # mapped, not dropped
    assert "seed" not in request and "service_tier" not in request


def test_no_op_values_are_not_reported_as_dropped() -> None:
    body = {"model": "m", "messages": HELLO, "store": False, "service_tier": "auto"}
    assert split_best_effort("anthropic", body, strict=False) == (body, ())
    to_messages_request(body, "claude")  # and the translator accepts them as today


def test_gemini_translates_the_seed_and_drops_the_user() -> None:
    body, dropped = split_best_effort("gemini", ORDINARY, strict=False)
    assert dropped == ("user", "metadata", "store", "service_tier")
    assert chat_request(body)["generationConfig"]["seed"] == 42


@pytest.mark.parametrize("provider", ["openai", "openai_compatible", "simulated"])
def test_openai_shaped_providers_drop_nothing(provider: str) -> None:
    assert split_best_effort(provider, ORDINARY, strict=False) == (ORDINARY, ())


def test_strict_params_refuses_what_would_be_dropped() -> None:
    with pytest.raises(ClientError, match="strict_params") as refused:
        split_best_effort("anthropic", ORDINARY, strict=True)
    assert refused.value.param == "seed" and refused.value.status_code == 400
    assert is_strict({"strict_params": True}) and is_strict({}, key_strict=True) and not is_strict({})


def test_parameters_that_change_the_answer_are_still_refused() -> None:
    body, _ = split_best_effort("anthropic", {**ORDINARY, "n": 2}, strict=False)
    with pytest.raises(ClientError, match="`n`"):
        to_messages_request(body, "claude")


def test_the_header_names_what_was_dropped() -> None:
    assert dropped_params_header(("seed", "store")) == {"x-glasskey-dropped-params": "seed,store"}
    assert dropped_params_header(()) == {}
