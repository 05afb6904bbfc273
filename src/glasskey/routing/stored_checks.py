"""What every start checks of the routes already stored: credentials sealed, upstreams still allowed.

A credential written unsealed (a row from before migration 0003, a direct SQL insert, an older
process during a rolling upgrade) is sealed here. A route whose base URL the upstream address
policy now refuses is reported with a warning and kept: deleting an operator's route, or
silently disabling it, would be a surprise; the warning says what to change.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, select

from glasskey.routing.credentials import CredentialVault, seal_stored_credentials
from glasskey.routing.upstream_address import UpstreamAddressRefused, check_upstream_url
from glasskey.store.tables import routes

log = logging.getLogger("glasskey.routing")


def refused_routes(conn: Connection, *, allow_private: bool) -> list[tuple[str, str]]:
    """``(route id, reason)`` for every stored route whose base URL the policy refuses."""
    refused = []
    for row in conn.execute(select(routes.c.id, routes.c.provider, routes.c.base_url).order_by(routes.c.id)):
        if row.provider == "simulated" and not row.base_url:
            continue  # the built-in provider calls nothing
        try:
            check_upstream_url(row.base_url, allow_private)
        except UpstreamAddressRefused as error:
            refused.append((row.id, error.message))
    return refused


def check_stored_routes(conn: Connection, vault: CredentialVault, *, allow_private: bool) -> list[tuple[str, str]]:
    """Seal what is unsealed, warn about refused upstreams; returns the refused routes."""
    sealed = seal_stored_credentials(conn, vault)
    if sealed:
        log.info("sealed %d route credential(s) that were stored unsealed", sealed)
    refused = refused_routes(conn, allow_private=allow_private)
    for route_id, reason in refused:
        log.warning(
            "route %s: %s. The route is kept; change its base_url or disable it (glasskey routes set %s)",
            route_id,
            reason,
            route_id,
        )
    return refused
