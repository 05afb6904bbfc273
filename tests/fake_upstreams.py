"""The three fake upstreams served side by side, and the routes and keys the native-API tests seed.

The Anthropic and Gemini endpoints are tested through every provider's route, so their SDK tests
start the fake OpenAI, Anthropic and Gemini upstreams together (``fake_upstreams``) and point one
route per model at one of them (``upstream_route``), at the model's official prices.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from anthropic import Anthropic
from anthropic.types import Message
from sqlalchemy import Connection

from fake_anthropic import FakeAnthropic
from fake_gemini import FAKE_API_KEY, FakeGemini
from fake_openai import FakeOpenAI
from gateway_fixtures import ServerThread
from glasskey.keys.policy import KeyPolicy
from glasskey.keys.service import create_key
from glasskey.ledger import audit
from glasskey.orgs.service import create_org, top_up
from glasskey.pricing.catalog import get_model
from glasskey.routing.routes import Route
from glasskey.services import Services


@dataclass
class FakeUpstreams:
    openai: FakeOpenAI
    anthropic: FakeAnthropic
    gemini: FakeGemini
    # The base URL a route of each provider is given (the OpenAI one ends in ``/v1``).
    urls: dict[str, str]

    def reset(self) -> None:
        self.openai.requests.clear()
        self.anthropic.reset()
        self.gemini.requests.clear()


@contextlib.contextmanager
def fake_upstreams(
    *, openai_credential: str, anthropic_credential: str, gemini_credential: str = FAKE_API_KEY
) -> Iterator[FakeUpstreams]:
    fakes = FakeOpenAI(credential=openai_credential), FakeAnthropic(anthropic_credential), FakeGemini(gemini_credential)
    openai, anthropic, gemini = fakes
    with ServerThread(openai.app) as o, ServerThread(anthropic.app) as a, ServerThread(gemini.app) as g:
        openai.base_url = o.base_url
        urls = {"openai": f"{o.base_url}/v1", "anthropic": a.base_url, "gemini": g.base_url, "simulated": ""}
        try:
            yield FakeUpstreams(openai, anthropic, gemini, urls)
        finally:
            anthropic.closing.set()  # a slow answer gives up at once, so its server stops at once


def upstream_route(
    conn: Connection,
    model: str,
    provider: str,
    base_url: str,
    *,
    credential: str | None = None,
    route_id: str | None = None,
    upstream_model: str | None = None,
    **fields: Any,
) -> Route:
    """A routed route of ``model`` to ``provider`` at ``base_url``, priced at the model's official prices."""
    prices = get_model(conn, model).official_prices
    return Route(
        id=route_id or f"rt-{model}",
        model=model,
        provider=provider,
        base_url=base_url,
        upstream_model=upstream_model or model,
        settlement=fields.pop("settlement", "routed"),
        prices=prices,
        costs=prices,
        credential=credential if provider != "simulated" else None,
        **fields,
    )


def funded_org(conn: Connection, name: str, services: Services, routed_micros: int = 500_000_000) -> str:
    """A new org whose routed wallet holds ``routed_micros``."""
    now = services.clock()
    org = create_org(conn, name, now)
    top_up(conn, org.id, "routed", routed_micros, now)
    return org.id


def audit_clean(services: Services) -> None:
    """The ledger is coherent, and receipt charges equal posted charges: what every SDK test ends with."""
    with services.db.read() as conn:
        report = audit(conn)
    report.raise_if_broken()
    assert report.receipt_charges_micros == report.posted_charges_micros


def user(text: str) -> Any:
    """One user turn of text, in the Anthropic and OpenAI shapes alike."""
    return [{"role": "user", "content": text}]


def anthropic_message(client: Anthropic, *, stream: bool, **params: Any) -> tuple[Message, str]:
    """A message the ``anthropic`` SDK created, or streamed and put together, and its request id."""
    if stream:
        with client.messages.stream(**params) as streamed:
            return streamed.get_final_message(), streamed.response.headers["x-request-id"]
    raw = client.messages.with_raw_response.create(**params)
    return raw.parse(), raw.headers["x-request-id"]


def new_test_key(services: Services, org_id: str, name: str, **policy: Any) -> str:
    """A key of ``org_id`` with ``policy``; its full secret."""
    with services.db.write() as conn:
        _, full = create_key(
            conn, pepper=services.pepper, org_id=org_id, name=name, policy=KeyPolicy(**policy), now=services.clock()
        )
    return full
