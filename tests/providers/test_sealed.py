"""The wrapper opens a sealed credential just before the call; a credential it cannot open fails the attempt."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from glasskey.providers.base import ChatResult, EmbeddingResult, ProviderError, RouteTarget
from glasskey.providers.sealed import SealedCredentialProvider, sealed_providers
from glasskey.routing.credentials import CredentialVault

CREDENTIAL = "sk-upstream-0123456789abcdef"
VAULT = CredentialVault([CredentialVault.generate_key()])


class Recording:
    """A provider that remembers the credential each call was given."""

    name = "recording"

    def __init__(self) -> None:
        self.seen: list[str | None] = []

    async def chat(self, target: RouteTarget, body: dict[str, Any]) -> ChatResult:
        self.seen.append(target.credential)
        return ChatResult(body={}, usage=None)

    async def _chunks(self) -> AsyncIterator[dict[str, Any]]:
        yield {"object": "chat.completion.chunk"}

    def stream_chat(
        self, target: RouteTarget, body: dict[str, Any], *, pauses: bool = False
    ) -> AsyncIterator[dict[str, Any]]:
        self.seen.append(target.credential)
        return self._chunks()

    async def embed(self, target: RouteTarget, body: dict[str, Any]) -> EmbeddingResult:
        self.seen.append(target.credential)
        return EmbeddingResult(body={}, usage=None)


def _target(credential: str | None) -> RouteTarget:
    return RouteTarget("rt-1", "recording", "https://api.example.com/v1", "m", credential)


def test_every_call_gets_the_opened_credential_and_plain_ones_pass_unchanged() -> None:
    inner = Recording()
    provider = SealedCredentialProvider(inner, VAULT)

    async def calls() -> None:
        await provider.chat(_target(VAULT.seal(CREDENTIAL)), {})
        await provider.embed(_target(VAULT.seal("env:UPSTREAM_KEY")), {})
        assert [chunk async for chunk in provider.stream_chat(_target(VAULT.seal(CREDENTIAL)), {})]
        await provider.chat(_target(None), {})
        await provider.chat(_target("sk-stored-before-sealing"), {})

    asyncio.run(calls())
    assert inner.seen == [CREDENTIAL, "env:UPSTREAM_KEY", CREDENTIAL, None, "sk-stored-before-sealing"]


def test_a_credential_no_key_opens_fails_at_the_first_chunk_of_a_stream() -> None:
    inner = Recording()
    foreign = CredentialVault([CredentialVault.generate_key()]).seal(CREDENTIAL)
    provider = SealedCredentialProvider(inner, VAULT)
    stream = provider.stream_chat(_target(foreign), {})  # no raise here: the gateway awaits the first chunk

    with pytest.raises(ProviderError) as caught:
        asyncio.run(stream.__anext__())  # type: ignore[arg-type]
    assert caught.value.status == 502 and caught.value.error_type == "configuration_error"
    with pytest.raises(ProviderError):
        asyncio.run(provider.chat(_target(foreign), {}))
    assert inner.seen == []


def test_each_sealed_value_is_opened_once() -> None:
    opened: list[str | None] = []

    class Counting(CredentialVault):
        def open(self, stored: str | None) -> str | None:
            opened.append(stored)
            return super().open(stored)

    vault = Counting([CredentialVault.generate_key()])
    inner = Recording()
    provider = SealedCredentialProvider(inner, vault)
    sealed = vault.seal(CREDENTIAL)

    async def calls() -> None:
        for _ in range(5):
            await provider.chat(_target(sealed), {})

    asyncio.run(calls())
    assert inner.seen == [CREDENTIAL] * 5 and opened == [sealed]


def test_providers_are_wrapped_once() -> None:
    once = sealed_providers({"recording": Recording()}, VAULT)
    assert sealed_providers(once, VAULT)["recording"] is once["recording"]
