"""Alert rules: the thresholds an org's owner sets, and the defaults that apply where none is set.

Three kinds, each with a subject:

* ``wallet_balance`` on ``wallet:credit`` or ``wallet:routed``: the wallet's available balance is
  below ``balance_below_micros``. Default: below 1 micro, i.e. nothing left to spend.
* ``key_budget`` on ``keys`` (every key of the org) or ``key:<key id>``: a key has used (spent plus
  held) at least each of ``budget_percents`` of its total or daily budget. Default: 50, 80, 100.
* ``key_failure_rate`` on ``keys`` or ``key:<key id>``: at least ``failure_rate_percent`` of a key's
  requests failed over the last ``failure_window_minutes``, counting only when there were at least
  ``failure_min_requests`` of them. Default: 50% over 15 minutes, at least 10 requests.

For a key, its own rule wins over the org's ``keys`` rule, which wins over the default. A rule
with ``enabled`` off silences its subject. A failure-rate value left out is the default's; a wallet
rule needs its balance, and a budget rule its percentages (unless it is off). Every number has a
bound, checked here so the admin API, the CLI and the dashboard refuse the same values.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select, update

from glasskey.alerts.tables import alert_rules
from glasskey.errors import ClientError, NotFound
from glasskey.ids import new_id
from glasskey.keys.service import get_key
from glasskey.limits import BUDGET_MAX_MICROS

WALLET_BALANCE = "wallet_balance"
KEY_BUDGET = "key_budget"
KEY_FAILURE_RATE = "key_failure_rate"
KINDS = (WALLET_BALANCE, KEY_BUDGET, KEY_FAILURE_RATE)
WALLET_KINDS = ("credit", "routed")
EVERY_KEY = "keys"

PERCENTS_MAX = 10  # thresholds per budget rule
FAILURE_WINDOW_MINUTES_MAX = 24 * 60
FAILURE_MIN_REQUESTS_MAX = 1_000_000
RULES_PER_ORG_MAX = 1000

DEFAULT_WALLET_BELOW_MICROS = 1
DEFAULT_BUDGET_PERCENTS = (50, 80, 100)
DEFAULT_FAILURE_RATE_PERCENT = 50
DEFAULT_FAILURE_WINDOW_MINUTES = 15
DEFAULT_FAILURE_MIN_REQUESTS = 10


@dataclass(frozen=True)
class AlertRule:
    kind: str
    subject: str
    enabled: bool = True
    balance_below_micros: int | None = None
    budget_percents: tuple[int, ...] | None = None
    failure_rate_percent: int | None = None
    failure_window_minutes: int | None = None
    failure_min_requests: int | None = None
    # None: a default, not stored.
    id: str | None = None

    def public(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"id": self.id, "kind": self.kind, "subject": self.subject, "enabled": self.enabled}
        shown["default"] = self.id is None
        if self.kind == WALLET_BALANCE:
            shown["balance_below_micros"] = self.balance_below_micros
        elif self.kind == KEY_BUDGET:
            shown["budget_percents"] = list(self.budget_percents or ())
        else:
            shown["failure_rate_percent"] = self.failure_rate_percent
            shown["failure_window_minutes"] = self.failure_window_minutes
            shown["failure_min_requests"] = self.failure_min_requests
        return shown


def default_rule(kind: str, subject: str) -> AlertRule:
    if kind == WALLET_BALANCE:
        return AlertRule(kind, subject, balance_below_micros=DEFAULT_WALLET_BELOW_MICROS)
    if kind == KEY_BUDGET:
        return AlertRule(kind, subject, budget_percents=DEFAULT_BUDGET_PERCENTS)
    return AlertRule(
        kind,
        subject,
        failure_rate_percent=DEFAULT_FAILURE_RATE_PERCENT,
        failure_window_minutes=DEFAULT_FAILURE_WINDOW_MINUTES,
        failure_min_requests=DEFAULT_FAILURE_MIN_REQUESTS,
    )


def _bounded(value: int | None, name: str, low: int, high: int) -> int:
    if value is None:
        raise ClientError(f"A rule of this kind needs {name}", param=name)
    if isinstance(value, bool) or not low <= value <= high:
        raise ClientError(f"{name} must be between {low} and {high}", param=name)
    return value


def checked(rule: AlertRule) -> AlertRule:
    """``rule`` with its values checked and the fields of other kinds dropped; ``ClientError`` otherwise."""
    if rule.kind not in KINDS:
        raise ClientError(f"kind must be one of {', '.join(KINDS)}", param="kind")
    if rule.kind == WALLET_BALANCE:
        if rule.subject not in (f"wallet:{kind}" for kind in WALLET_KINDS):
            raise ClientError("A wallet_balance rule is on a wallet: credit or routed", param="wallet")
        below = _bounded(rule.balance_below_micros, "balance_below_micros", 0, BUDGET_MAX_MICROS)
        return AlertRule(rule.kind, rule.subject, rule.enabled, balance_below_micros=below, id=rule.id)
    if rule.subject != EVERY_KEY and not rule.subject.startswith("key:"):
        raise ClientError("A key rule is on every key of the org or on one key", param="key_id")
    if rule.kind == KEY_BUDGET:
        percents = rule.budget_percents or (() if rule.enabled else DEFAULT_BUDGET_PERCENTS)
        if not 1 <= len(percents) <= PERCENTS_MAX:
            raise ClientError(f"budget_percents holds 1 to {PERCENTS_MAX} percentages", param="budget_percents")
        for percent in percents:
            _bounded(percent, "budget_percents", 1, 100)
        return AlertRule(
            rule.kind, rule.subject, rule.enabled, budget_percents=tuple(sorted(set(percents))), id=rule.id
        )
    # A value left out is the default's: "20% failed" means over the default 15 minutes.
    rate = rule.failure_rate_percent if rule.failure_rate_percent is not None else DEFAULT_FAILURE_RATE_PERCENT
    window = rule.failure_window_minutes if rule.failure_window_minutes is not None else DEFAULT_FAILURE_WINDOW_MINUTES
    least = rule.failure_min_requests if rule.failure_min_requests is not None else DEFAULT_FAILURE_MIN_REQUESTS
    return AlertRule(
        rule.kind,
        rule.subject,
        rule.enabled,
        failure_rate_percent=_bounded(rate, "failure_rate_percent", 1, 100),
        failure_window_minutes=_bounded(window, "failure_window_minutes", 1, FAILURE_WINDOW_MINUTES_MAX),
        failure_min_requests=_bounded(least, "failure_min_requests", 1, FAILURE_MIN_REQUESTS_MAX),
        id=rule.id,
    )


def key_subject(conn: Connection, org_id: str, key_ref: str | None) -> str:
    """The subject naming one key of the org (by id or prefix), or every key when ``key_ref`` is None."""
    if key_ref is None:
        return EVERY_KEY
    key = get_key(conn, key_ref)
    if key.org_id != org_id:
        raise NotFound(f"key {key_ref} does not exist")
    return f"key:{key.id}"


def _rule(row: Any) -> AlertRule:
    return AlertRule(
        kind=row.kind,
        subject=row.subject,
        enabled=row.enabled,
        balance_below_micros=row.balance_below_micros,
        budget_percents=tuple(row.budget_percents) if row.budget_percents is not None else None,
        failure_rate_percent=row.failure_rate_percent,
        failure_window_minutes=row.failure_window_minutes,
        failure_min_requests=row.failure_min_requests,
        id=row.id,
    )


def list_rules(conn: Connection, org_id: str) -> list[AlertRule]:
    """The org's stored rules."""
    rows = conn.execute(
        select(alert_rules).where(alert_rules.c.org_id == org_id).order_by(alert_rules.c.kind, alert_rules.c.subject)
    )
    return [_rule(row) for row in rows]


def set_rule(conn: Connection, org_id: str, rule: AlertRule, now: datetime) -> AlertRule:
    """Store ``rule``, replacing the org's rule of the same kind and subject."""
    rule = checked(rule)
    values = {
        "enabled": rule.enabled,
        "balance_below_micros": rule.balance_below_micros,
        "budget_percents": list(rule.budget_percents) if rule.budget_percents is not None else None,
        "failure_rate_percent": rule.failure_rate_percent,
        "failure_window_minutes": rule.failure_window_minutes,
        "failure_min_requests": rule.failure_min_requests,
        "updated_at": now,
    }
    where = (
        (alert_rules.c.org_id == org_id) & (alert_rules.c.kind == rule.kind) & (alert_rules.c.subject == rule.subject)
    )
    existing = conn.execute(select(alert_rules.c.id).where(where)).scalar()
    if existing is not None:
        conn.execute(update(alert_rules).where(alert_rules.c.id == existing).values(**values))
        return replace(rule, id=existing)
    if len(list_rules(conn, org_id)) >= RULES_PER_ORG_MAX:
        raise ClientError(f"An org has at most {RULES_PER_ORG_MAX} alert rules")
    rule_id = new_id("alr")
    conn.execute(alert_rules.insert().values(id=rule_id, org_id=org_id, kind=rule.kind, subject=rule.subject, **values))
    return replace(rule, id=rule_id)


def delete_rule(conn: Connection, org_id: str, rule_id: str) -> AlertRule:
    """Remove a stored rule (its subject falls back to the next rule, or the default)."""
    row = conn.execute(
        select(alert_rules).where(alert_rules.c.id == rule_id).where(alert_rules.c.org_id == org_id)
    ).first()
    if row is None:
        raise NotFound(f"alert rule {rule_id} does not exist")
    conn.execute(delete(alert_rules).where(alert_rules.c.id == rule_id))
    return _rule(row)


@dataclass(frozen=True)
class RuleBook:
    """The rules in force for one org: each subject's own, else the org's ``keys`` rule, else the default."""

    stored: dict[tuple[str, str], AlertRule]

    def wallet(self, wallet_kind: str) -> AlertRule:
        subject = f"wallet:{wallet_kind}"
        return self.stored.get((WALLET_BALANCE, subject)) or default_rule(WALLET_BALANCE, subject)

    def key(self, kind: str, key_id: str) -> AlertRule:
        return (
            self.stored.get((kind, f"key:{key_id}"))
            or self.stored.get((kind, EVERY_KEY))
            or default_rule(kind, EVERY_KEY)
        )

    def in_force(self) -> list[AlertRule]:
        """Every stored rule, and the defaults of the subjects no stored rule covers."""
        found = dict(self.stored)
        for wallet_kind in WALLET_KINDS:
            found.setdefault((WALLET_BALANCE, f"wallet:{wallet_kind}"), self.wallet(wallet_kind))
        for kind in (KEY_BUDGET, KEY_FAILURE_RATE):
            found.setdefault((kind, EVERY_KEY), default_rule(kind, EVERY_KEY))
        return [found[name] for name in sorted(found)]


def rule_book(conn: Connection, org_id: str) -> RuleBook:
    return RuleBook({(rule.kind, rule.subject): rule for rule in list_rules(conn, org_id)})
