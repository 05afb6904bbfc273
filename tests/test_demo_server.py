"""`glasskey demo` as a user runs it: a real process whose printed lines work with the openai SDK."""

from __future__ import annotations

import re

import pytest
from openai import OpenAI

from demo_process import running_demo
from gateway_fixtures import free_port


@pytest.fixture
def demo_process(tmp_path):
    port = free_port()
    with running_demo(port, "--data-dir", str(tmp_path / "data")) as output:
        yield port, output


def test_demo_prints_paste_ready_lines_that_work_with_the_openai_sdk(demo_process):
    port, output = demo_process
    base_urls = re.findall(r"^export OPENAI_BASE_URL=(\S+)$", output, re.MULTILINE)
    keys = re.findall(r"^export OPENAI_API_KEY=(gk-[a-z0-9]{12}-[A-Za-z0-9]{40})$", output, re.MULTILINE)
    assert base_urls == [f"http://127.0.0.1:{port}/v1"] * 2
    assert len(keys) == 2
    assert re.search(r"^export GLASSKEY_ADMIN_TOKEN=\S{16,}$", output, re.MULTILINE)
    for key in keys:
        client = OpenAI(base_url=base_urls[0], api_key=key, max_retries=0)
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}])
        assert reply.choices[0].message.content
        chunks = list(
            client.chat.completions.create(
                model="gemini-2.5-flash",
                messages=[{"role": "user", "content": "Hello"}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
        assert {m.id for m in client.models.list()} == {
            "gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-flash", "text-embedding-3-small", "gemini-embedding-001"
        }  # fmt: skip
