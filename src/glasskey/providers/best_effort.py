"""Best-effort parameters: honoured where a provider can, otherwise left out and said so.

The OpenAI spec makes some parameters best effort or informational: ``seed`` ("we will make a
best effort"), ``user`` and ``safety_identifier`` (ids for abuse monitoring), ``metadata``,
``store``, ``service_tier``, ``prompt_cache_key``. Ordinary clients send them, and a route to a
provider without them must not break those clients with a 400. So, for the route about to be
called, ``split_best_effort`` takes out of the body what that provider cannot honour (each
translator names its own: ``unhonoured_best_effort``) and returns their names, for the receipt's
``dropped_params`` and the ``x-glasskey-dropped-params`` response header. Parameters that change
what the answer means (``n``, ``logprobs``, a ``response_format`` a provider cannot follow) are
not best effort: the translators still refuse them with a 400.

``strict_params`` (a route option, or a key's) restores the refusal: nothing is dropped, and a
best-effort parameter the provider cannot honour is a 400 naming it, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from glasskey.errors import ClientError
from glasskey.providers import anthropic_translate, gemini_translate

DROPPED_PARAMS_HEADER = "x-glasskey-dropped-params"

# openai and openai_compatible pass every parameter through (the upstream decides); the
# simulated provider honours them all as OpenAI does. Only translated providers drop any.
_UNHONOURED: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "anthropic": anthropic_translate.unhonoured_best_effort,
    "gemini": gemini_translate.unhonoured_best_effort,
}


def split_best_effort(
    provider: str, body: dict[str, Any], *, strict: bool, left_out: tuple[str, ...] = ()
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The body to send to ``provider`` and the names of the best-effort parameters left out of it.

    ``left_out`` names what an inbound translation already could not carry to this provider (the
    Anthropic endpoint's ``thinking`` on an OpenAI route): listed and refused under ``strict`` alike.
    With ``strict``, nothing is left out: a parameter the provider cannot honour is refused here
    (400, ``source: client``, ``param`` naming it), before any upstream call.
    """
    unhonoured = _UNHONOURED.get(provider)
    dropped = [*left_out, *(unhonoured(body) if unhonoured is not None else [])]
    if not dropped:
        return body, ()
    if strict:
        raise ClientError(
            f"`{dropped[0]}` is not supported by the {provider} provider, and strict_params is on"
            " (without it, best-effort parameters a provider cannot honour are dropped and listed)",
            param=dropped[0],
        )
    return {name: value for name, value in body.items() if name not in dropped}, tuple(dropped)


def dropped_params_header(dropped: tuple[str, ...]) -> dict[str, str]:
    """The response header naming what was dropped (none when nothing was)."""
    return {DROPPED_PARAMS_HEADER: ",".join(dropped)} if dropped else {}


def is_strict(route_options: dict[str, Any], key_strict: bool = False) -> bool:
    """``strict_params`` from the key's policy or the route's options: either one asks for the 400."""
    return key_strict or route_options.get("strict_params") is True
