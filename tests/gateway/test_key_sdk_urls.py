"""The base URLs and examples that ``/v1/key`` and the dashboard's key page print work, as printed.

The gateway's public URL is the address it really serves on, so each printed example is run as it
is (with the key bound to ``KEY``) and each printed environment variable is set for an SDK built
without a base URL: the official ``openai``, ``anthropic`` and ``google-genai`` SDKs each make a
call through the gateway and leave a receipt of their own endpoint.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from google import genai

from conftest_helpers import make_settings
from dashboard.conftest import Dashboard
from gateway_fixtures import ServerThread, free_port, seed
from glasskey.app import build_app
from glasskey.keys.service import list_keys
from glasskey.receipts.records import get_receipt
from glasskey.services import Services, build_services

# What each SDK is asked, and the endpoint its receipt names.
CALLS = {
    "openai": ("chat.completions", lambda client: client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    ).headers["x-request-id"]),
    "anthropic": ("anthropic.messages", lambda client: client.messages.with_raw_response.create(
        model="claude-sonnet-4-5", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    ).headers["x-request-id"]),
    "gemini": ("gemini.generate_content", lambda client: client.models.generate_content(
        model="gemini-2.5-flash", contents="hi"
    ).sdk_http_response.headers["x-request-id"]),
}  # fmt: skip
SDK_NAMES = {"OpenAI": openai.OpenAI, "Anthropic": anthropic.Anthropic, "genai": genai}
ENV_CLIENTS = {
    "openai": lambda key: openai.OpenAI(api_key=key, max_retries=0),
    "anthropic": lambda key: anthropic.Anthropic(api_key=key, max_retries=0),
    "gemini": lambda key: genai.Client(api_key=key),
}


class Served:
    def __init__(self, services: Services, base_url: str, key: str) -> None:
        self.services, self.base_url, self.key = services, base_url, key

    def endpoint_of(self, request_id: str) -> str:
        with self.services.db.read() as conn:
            receipt = get_receipt(conn, request_id)
        assert receipt["status"] == "succeeded"
        return str(receipt["endpoint"])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    port = free_port()
    public_url = f"http://127.0.0.1:{port}"
    services = build_services(make_settings(tmp_path_factory.mktemp("sdk-urls"), public_url=public_url))
    seeded = seed(services)
    with ServerThread(build_app(services), port=port) as server:
        assert server.base_url == public_url
        yield Served(services, server.base_url, seeded["routed_key"])
    services.close()


def printed(served: Served) -> dict[str, dict[str, str]]:
    response = httpx.get(f"{served.base_url}/v1/key", headers={"authorization": f"Bearer {served.key}"})
    assert response.status_code == 200
    base_urls: dict[str, dict[str, str]] = response.json()["base_urls"]
    assert set(base_urls) == set(CALLS)
    return base_urls


@pytest.mark.parametrize("sdk", list(CALLS))
def test_each_printed_example_runs_as_printed(served: Served, sdk: str):
    example = printed(served)[sdk]["example"]
    client: Any = eval(example, {**SDK_NAMES, "KEY": served.key})  # the line a person would paste
    endpoint, call = CALLS[sdk]
    assert served.endpoint_of(call(client)) == endpoint


@pytest.mark.parametrize("sdk", list(CALLS))
def test_each_printed_environment_variable_is_read_by_its_sdk(
    served: Served, sdk: str, monkeypatch: pytest.MonkeyPatch
):
    use = printed(served)[sdk]
    monkeypatch.setenv(use["env"], use["base_url"])
    endpoint, call = CALLS[sdk]
    assert served.endpoint_of(call(ENV_CLIENTS[sdk](served.key))) == endpoint


def test_the_dashboard_key_page_prints_the_same_urls_and_examples(served: Served):
    with served.services.db.read() as conn:
        key_id = next(k.id for k in list_keys(conn) if k.name == "routed")
    page = Dashboard(served.base_url).get(f"/keys/{key_id}").text
    table = page[page.index('id="sdk-base-urls"') : page.index("</table>", page.index('id="sdk-base-urls"'))]
    rows = dict(re.findall(r'<tr data-sdk="([a-z_]+)">(.*?)</tr>', table, flags=re.DOTALL))
    assert set(rows) == set(CALLS)
    for sdk, use in printed(served).items():
        shown = html.unescape(rows[sdk])
        assert f"<code>{use['base_url']}</code>" in shown and f"<code>{use['env']}</code>" in shown
        assert f"<code>{use['example']}</code>" in shown
