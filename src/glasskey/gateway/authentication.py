"""Who sends a request: the key behind its bearer token, checked every time, counted when it fails.

The key's record comes from the one-second read cache (an unknown public id from the cached set of
every public id, so it costs no database read either); the secret is verified on every request.
A refused key whose public id is known is still named on the receipt; every failure is counted per
client address and public id (``keys.auth_throttle``).
"""

from __future__ import annotations

import logging
from functools import partial

import anyio.to_thread

from glasskey.errors import APIKeyError, NotFound
from glasskey.gateway.run import Run
from glasskey.keys import secret as key_secret
from glasskey.keys.directory import DIRECTORY_CACHE_KEY, load_public_ids
from glasskey.keys.service import KeyRecord, bearer_token, check_usable, find_by_public_id, get_key, verify_parsed
from glasskey.services import Services

log = logging.getLogger("glasskey.gateway")


class Authentication:
    def __init__(self, services: Services) -> None:
        self.services = services

    async def of_request(self, run: Run, authorization: str | None, client_address: str | None = None) -> KeyRecord:
        """The key behind the request. A refused key that names a known public id is still named on
        the receipt (key and org), so its holder finds the failure among their own; the caller
        learns nothing more than 401.

        Every failure is counted per client address and public id (``keys.auth_throttle``): past a
        few a minute it leaves a count instead of a receipt, and past the limit it is a 429."""
        try:
            key = await self._verified_key(authorization, run)
        except APIKeyError as error:
            # key_id is set only when the public id names a known key (``_attribute``).
            known_public_id = run.receipt.key_public_id if run.receipt.key_id is not None else None
            verdict = await self.services.auth_throttle.failed(client_address, known_public_id)
            run.receipted = verdict.receipted
            # The public id only, never the token: the id is what receipts and the dashboard name.
            log.debug(
                "request %s: authentication failed (%s) for public id %s from %s; %s",
                run.receipt.request_id,
                error.code,
                run.receipt.key_public_id,
                client_address,
                "refused" if verdict.refusal else ("receipted" if verdict.receipted else "counted"),
            )
            if verdict.refusal is not None:
                raise verdict.refusal from error
            raise
        self._attribute(run, key)
        return key

    async def of_key_id(self, run: Run, key_id: str) -> KeyRecord:
        """The key a glasskey process acts for by its id (a research job's key: its secret is never
        stored). Read fresh, not from the cache, and refused as a request with the key would be:
        revoked or expired is ``source: key``, on the request's receipt."""

        def load() -> KeyRecord | None:
            with self.services.db.read() as conn:
                try:
                    return get_key(conn, key_id)
                except NotFound:
                    return None

        record = await anyio.to_thread.run_sync(load)
        if record is None:
            raise APIKeyError(f"API key {key_id} no longer exists", code="invalid_api_key")
        self._attribute(run, record)
        check_usable(record, self.services.clock())
        return record

    async def key_of(self, authorization: str | None) -> KeyRecord:
        """The key behind a request that leaves no receipt (metadata endpoints)."""
        return await self._verified_key(authorization, None)

    async def _verified_key(self, authorization: str | None, run: Run | None) -> KeyRecord:
        # The record comes from the one-second cache; the secret is checked every time.
        parsed = key_secret.parse(bearer_token(authorization))
        record = None
        if parsed is not None:
            public_id = parsed[0]
            if run is not None:
                run.receipt.key_public_id = public_id
            if await self._may_exist(public_id):
                record = await self.services.cache.get(
                    ("key", public_id), partial(find_by_public_id, public_id=public_id)
                )
        try:
            return verify_parsed(parsed, record, pepper=self.services.pepper, now=self.services.clock())
        except APIKeyError:
            if run is not None and record is not None:
                self._attribute(run, record)
            raise

    async def _may_exist(self, public_id: str) -> bool:
        """Whether a key may have ``public_id``: an absent one is answered from the cached set of
        every public id, without a database read (``keys.directory``)."""
        cache = self.services.cache
        if cache.ttl_seconds <= 0:
            return True
        known = await cache.get(DIRECTORY_CACHE_KEY, load_public_ids)
        return known is None or public_id in known

    def _attribute(self, run: Run, key: KeyRecord) -> None:
        receipt = run.receipt
        receipt.key_id = key.id
        receipt.org_id = key.org_id
        receipt.settlement = key.policy.settlement
        receipt.wallet_kind = key.policy.wallet_kind
