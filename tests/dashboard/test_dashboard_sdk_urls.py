"""The key page says where each SDK reaches the gateway with the key: the same facts as /v1/key."""

from __future__ import annotations

import html
import re

from dashboard.conftest import Dashboard
from gateway_fixtures import Gateway
from glasskey.keys.service import list_keys


def test_the_key_page_lists_the_base_url_and_an_example_per_sdk(gateway: Gateway, dashboard: Dashboard) -> None:
    with gateway.services.db.read() as conn:
        key_id = next(k.id for k in list_keys(conn) if k.name == "routed")
    page = dashboard.get(f"/keys/{key_id}").text
    table = page[page.index('id="sdk-base-urls"') : page.index("</table>", page.index('id="sdk-base-urls"'))]
    public_url = gateway.services.settings.effective_public_url
    rows = dict(re.findall(r'<tr data-sdk="([a-z_]+)">(.*?)</tr>', table, flags=re.DOTALL))
    assert f"<code>{public_url}/v1</code>" in rows["openai"] and "OPENAI_BASE_URL" in rows["openai"]
    assert f"<code>{public_url}</code>" in rows["anthropic"] and "ANTHROPIC_BASE_URL" in rows["anthropic"]
    assert f'Anthropic(base_url="{public_url}", api_key=KEY)' in html.unescape(rows["anthropic"])
