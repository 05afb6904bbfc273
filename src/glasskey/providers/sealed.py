"""A provider wrapper that opens a route's sealed credential just before each upstream call.

Routes are read (and cached) with their credential still sealed (``routing.credentials``); only
this wrapper, when a request runs, turns it back into the upstream key (the first time only: it
remembers what it opened) and hands the inner provider a ``RouteTarget`` carrying it.
``build_services`` wraps every provider, so the gateway, the probes and any provider a caller
passes in all see opened credentials.

A credential that no configured key opens fails that attempt like an unreachable upstream (502,
``configuration_error``): the request falls back to its next route, if it has one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from glasskey.providers.base import ChatResult, EmbeddingResult, Provider, ProviderError, RouteTarget
from glasskey.providers.sse import Pause
from glasskey.routing.credentials import CredentialUnopenable, CredentialVault, is_sealed

# Opening costs about 30 us (an HMAC and an AES decryption); a gateway has few routes, so each
# sealed value is opened once and remembered by this wrapper, which forgets all past this many.
OPENED_REMEMBERED_MAX = 256


class SealedCredentialProvider:
    def __init__(self, inner: Provider, vault: CredentialVault) -> None:
        self.inner = inner
        self.vault = vault
        self.name = inner.name
        self._opened_by_sealed: dict[str, str | None] = {}

    def opened(self, target: RouteTarget) -> RouteTarget:
        """``target`` with its credential opened (a ``ProviderError`` 502 when no key opens it)."""
        sealed = target.credential
        if sealed is None or not is_sealed(sealed):
            return target
        if sealed in self._opened_by_sealed:
            return replace(target, credential=self._opened_by_sealed[sealed])
        try:
            credential = self.vault.open(sealed)
        except CredentialUnopenable as error:
            raise ProviderError(self.name, 502, error.message, error_type="configuration_error") from None
        if len(self._opened_by_sealed) >= OPENED_REMEMBERED_MAX:
            self._opened_by_sealed.clear()
        self._opened_by_sealed[sealed] = credential
        return replace(target, credential=credential)

    async def chat(self, target: RouteTarget, body: dict[str, Any]) -> ChatResult:
        return await self.inner.chat(self.opened(target), body)

    def stream_chat(
        self, target: RouteTarget, body: dict[str, Any], *, pauses: bool = False
    ) -> AsyncIterator[dict[str, Any] | Pause]:
        # The inner iterator itself is returned, so streaming costs no extra layer per chunk; a
        # failure to open is raised by the first ``__anext__``, where the gateway expects errors.
        try:
            opened = self.opened(target)
        except ProviderError as error:
            return _failing(error)
        return self.inner.stream_chat(opened, body, pauses=pauses)

    async def embed(self, target: RouteTarget, body: dict[str, Any]) -> EmbeddingResult:
        return await self.inner.embed(self.opened(target), body)


async def _failing(error: ProviderError) -> AsyncIterator[dict[str, Any] | Pause]:
    raise error
    yield {}  # unreachable: makes this an async generator


def sealed_providers(providers: dict[str, Provider], vault: CredentialVault) -> dict[str, Provider]:
    """Every provider wrapped (once: a provider already wrapped is kept as it is)."""
    return {
        name: provider if isinstance(provider, SealedCredentialProvider) else SealedCredentialProvider(provider, vault)
        for name, provider in providers.items()
    }
