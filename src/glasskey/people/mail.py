"""Mailing an invitation link, when ``GLASSKEY_SMTP_URL`` is set (standard library ``smtplib``).

``smtp://[user:password@]host[:port][?from=address&starttls=1]``, or ``smtps://`` for TLS from the
first byte. Sending is bounded by ``SMTP_TIMEOUT_SECONDS``. A failure is not the inviter's fault and
loses nothing: the caller shows the link to copy instead, with the reason mail failed.
"""

from __future__ import annotations

import smtplib
from datetime import datetime
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

SMTP_TIMEOUT_SECONDS = 10.0


def invitation_message(
    *, sender: str, to: str, org_name: str, role: str, link: str, expires_at: datetime
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = f"You are invited to {org_name} on glasskey"
    message.set_content(
        f"You are invited to join {org_name} on glasskey as {role}.\n\n"
        f"Open this link to set your password and join (it works once, until {expires_at.isoformat()}):\n\n"
        f"{link}\n\nIf you did not expect this, ignore it: nothing happens until the link is used.\n"
    )
    return message


def send_invitation(smtp_url: str, *, to: str, org_name: str, role: str, link: str, expires_at: datetime) -> str | None:
    """Send the invitation; None when the server took it, else why it did not (never raises for mail trouble)."""
    parts = urlsplit(smtp_url)
    query = parse_qs(parts.query)
    host = parts.hostname or ""
    sender = query.get("from", [f"glasskey@{host}"])[0]
    message = invitation_message(sender=sender, to=to, org_name=org_name, role=role, link=link, expires_at=expires_at)
    try:
        if parts.scheme == "smtps":
            client: smtplib.SMTP = smtplib.SMTP_SSL(host, parts.port or 465, timeout=SMTP_TIMEOUT_SECONDS)
        else:
            client = smtplib.SMTP(host, parts.port or 25, timeout=SMTP_TIMEOUT_SECONDS)
        with client:
            if query.get("starttls", ["0"])[0] == "1":
                client.starttls()
            if parts.username:
                client.login(unquote(parts.username), unquote(parts.password or ""))
            client.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:
        return f"mail was not sent ({type(exc).__name__}: {exc})"
    return None
