"""A key's policy: what it may call, how it settles, and the limits on its spending."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from glasskey.errors import ClientError
from glasskey.limits import BUDGET_MAX_MICROS, RPM_LIMIT_MAX, check_range

SETTLEMENT_WALLET = {"official": "credit", "routed": "routed"}


@dataclass(frozen=True)
class KeyPolicy:
    allowed_models: tuple[str, ...] | None = None  # None: every model in the catalog
    settlement: str = "routed"
    lower_cost_routes: bool = False
    backup_routes: bool = False
    # Refuse (400) a best-effort parameter a route's provider cannot honour, instead of dropping it
    # and listing it on the receipt (providers/best_effort.py); a route can ask the same.
    strict_params: bool = False
    budget_total_micros: int | None = None
    budget_daily_micros: int | None = None
    rpm_limit: int | None = None
    expires_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.settlement not in SETTLEMENT_WALLET:
            raise ClientError("settlement must be `official` or `routed`", param="settlement")
        for name in ("budget_total_micros", "budget_daily_micros", "rpm_limit"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ClientError(f"{name} must be a non-negative integer", param=name)
            if value is not None:
                check_range(name, value, RPM_LIMIT_MAX if name == "rpm_limit" else BUDGET_MAX_MICROS)
        if self.expires_at is not None and self.expires_at.tzinfo is None:
            raise ClientError("expires_at needs a time zone", param="expires_at")

    @property
    def wallet_kind(self) -> str:
        return SETTLEMENT_WALLET[self.settlement]

    def allows(self, model: str) -> bool:
        return self.allowed_models is None or model in self.allowed_models

    def as_dict(self) -> dict[str, Any]:
        return {
            "allowed_models": list(self.allowed_models) if self.allowed_models is not None else None,
            "settlement": self.settlement,
            "lower_cost_routes": self.lower_cost_routes,
            "backup_routes": self.backup_routes,
            "strict_params": self.strict_params,
            "budget_total_micros": self.budget_total_micros,
            "budget_daily_micros": self.budget_daily_micros,
            "rpm_limit": self.rpm_limit,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }


# The one default of every key-creation surface: the CLI's options, the admin API's body and both
# dashboard forms (the operator's and a person's) read their defaults from here, so a key made
# with nothing chosen is the same key wherever it is made.
DEFAULT_POLICY = KeyPolicy()
