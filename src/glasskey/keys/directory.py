"""The set of every key's public id, so that an unknown public id costs no database read (issue 18 #14).

Without it, a public id no key has missed the read cache and went to the database on every
request (the cache keeps an absence, but an enumeration sends a new id each time): ~2 ms more than
a known id, which made the difference measurable. The set is one entry of the read cache
(``("public_ids",)``), so it lives as long as any cached key (the cache TTL, reloaded in the
background), and an admin change through the API or dashboard (a new key) drops it at once like
every other entry. A key created elsewhere (the CLI of another process) is accepted within the
cache TTL, as a revoked key is refused within it.

Bounded: with more than ``PUBLIC_IDS_MAX`` keys the set is not kept (``None``) and every public id is
looked up as before; with the cache off (TTL 0) it is not used either.
"""

from __future__ import annotations

from sqlalchemy import Connection, select

from glasskey.store.tables import api_keys

PUBLIC_IDS_MAX = 50_000
DIRECTORY_CACHE_KEY = ("public_ids",)


def load_public_ids(conn: Connection) -> frozenset[str] | None:
    """Every public id, or None when there are more than ``PUBLIC_IDS_MAX``."""
    ids = conn.scalars(select(api_keys.c.public_id).limit(PUBLIC_IDS_MAX + 1)).all()
    return None if len(ids) > PUBLIC_IDS_MAX else frozenset(ids)
