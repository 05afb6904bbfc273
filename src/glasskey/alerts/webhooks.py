"""An org's webhook: its URL, judged by the upstream address policy, and its signing secret, sealed.

The URL is judged like a route's base URL (``routing.upstream_address``): never cloud metadata,
link-local or userinfo URLs; loopback and private addresses only with ``allow_private_upstreams``.
Each delivery judges it again and resolves its host through the same guarded resolver as upstream
calls (DNS rebinding). The secret (``gkwh_`` and 32 random bytes) is shown once, when it is made,
and stored sealed by the route credentials' Fernet vault; every view shows only its mask.
``glasskey routes rotate-encryption-key`` re-seals these secrets with the route credentials.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select, update

from glasskey.alerts.tables import URL_MAX_LENGTH, alert_deliveries, alert_firing, alert_webhooks
from glasskey.errors import ClientError
from glasskey.routing.credentials import CredentialVault, resealed_all, shown_credential
from glasskey.routing.upstream_address import UpstreamAddressRefused, check_upstream_url

SECRET_PREFIX = "gkwh_"


def check_webhook_url(url: str, allow_private: bool) -> None:
    """Refuse (``UpstreamAddressRefused``, 400, param ``url``) a URL a webhook may not have."""
    if len(url) > URL_MAX_LENGTH:
        raise ClientError(f"A webhook URL is at most {URL_MAX_LENGTH} characters", param="url")
    try:
        check_upstream_url(url, allow_private)
    except UpstreamAddressRefused as refused:
        raise UpstreamAddressRefused(
            refused.message.replace("base_url refused", "webhook url refused"), param="url"
        ) from None


@dataclass(frozen=True)
class Webhook:
    org_id: str
    url: str
    secret_sealed: str
    created_at: datetime
    updated_at: datetime

    def public(self) -> dict[str, Any]:
        return {
            "object": "alerts.webhook",
            "url": self.url,
            "secret": shown_credential(self.secret_sealed),
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


def get_webhook(conn: Connection, org_id: str) -> Webhook | None:
    row = conn.execute(select(alert_webhooks).where(alert_webhooks.c.org_id == org_id)).first()
    if row is None:
        return None
    return Webhook(row.org_id, row.url, row.secret_sealed, row.created_at, row.updated_at)


def set_webhook(
    conn: Connection,
    vault: CredentialVault,
    org_id: str,
    url: str,
    now: datetime,
    *,
    allow_private: bool,
    rotate_secret: bool = False,
) -> tuple[Webhook, str | None]:
    """Set the org's webhook URL; returns it and the new secret (made for a new webhook or when
    ``rotate_secret``; None when the existing secret is kept)."""
    check_webhook_url(url, allow_private)
    existing = get_webhook(conn, org_id)
    secret = SECRET_PREFIX + secrets.token_urlsafe(32) if existing is None or rotate_secret else None
    sealed = vault.seal(secret) if secret is not None else None
    if existing is None:
        assert sealed is not None
        conn.execute(
            alert_webhooks.insert().values(org_id=org_id, url=url, secret_sealed=sealed, created_at=now, updated_at=now)
        )
    else:
        values: dict[str, Any] = {"url": url, "updated_at": now}
        if sealed is not None:
            values["secret_sealed"] = sealed
        conn.execute(update(alert_webhooks).where(alert_webhooks.c.org_id == org_id).values(**values))
    webhook = get_webhook(conn, org_id)
    assert webhook is not None
    return webhook, secret


def delete_webhook(conn: Connection, org_id: str, now: datetime) -> bool:
    """Remove the org's webhook: its pending deliveries are dropped, and what was firing is forgotten,
    so a webhook set again later is sent what is past its threshold then, once."""
    removed = conn.execute(delete(alert_webhooks).where(alert_webhooks.c.org_id == org_id)).rowcount > 0
    conn.execute(
        update(alert_deliveries)
        .where(alert_deliveries.c.org_id == org_id)
        .where(alert_deliveries.c.status == "pending")
        .values(status="dropped", next_attempt_at=None, updated_at=now)
    )
    conn.execute(delete(alert_firing).where(alert_firing.c.org_id == org_id))
    return removed


def webhook_orgs(conn: Connection) -> list[str]:
    """The orgs with a webhook: the only ones the sweep evaluates."""
    return list(conn.scalars(select(alert_webhooks.c.org_id).order_by(alert_webhooks.c.org_id)))


def reseal_webhook_secrets(conn: Connection, vault: CredentialVault) -> int:
    """Rewrite every webhook secret under the vault's first key; returns how many.

    All or nothing, like ``routing.credentials.reseal_stored_credentials``: when one secret opens
    with none of the keys, nothing is rewritten and ``CredentialUnopenable`` names the orgs.
    """
    rows = conn.execute(select(alert_webhooks.c.org_id, alert_webhooks.c.secret_sealed)).all()
    stored = [(row.org_id, row.secret_sealed) for row in rows]
    resealed = resealed_all(vault, stored, "the webhook secret of org(s)")
    for org_id, sealed in resealed:
        conn.execute(update(alert_webhooks).where(alert_webhooks.c.org_id == org_id).values(secret_sealed=sealed))
    return len(resealed)
