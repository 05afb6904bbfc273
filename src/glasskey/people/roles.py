"""Roles in an org and the one rule between them: no role acts on an equal or higher role.

``owner`` > ``billing`` > ``member`` > ``viewer``. The operator (the admin token, or an operator
account) stands above every org role. An owner may therefore manage billing people, members and
viewers, but neither another owner nor a grant of ``owner``: only the operator makes owners.
"""

from __future__ import annotations

from typing import Literal, get_args

from glasskey.errors import AdminAuthError, ClientError

Role = Literal["owner", "billing", "member", "viewer"]
ROLES: tuple[Role, ...] = get_args(Role)
OPERATOR = "operator"
_RANK = {"viewer": 1, "member": 2, "billing": 3, "owner": 4, OPERATOR: 5}


def rank(role: str) -> int:
    if role not in _RANK:
        raise ClientError(f"unknown role {role!r}; one of {', '.join(ROLES)}", param="role")
    return _RANK[role]


def check_role(role: str) -> Role:
    if role not in ROLES:
        raise ClientError(f"unknown role {role!r}; one of {', '.join(ROLES)}", param="role")
    return role


def can_act_on(actor_role: str, target_role: str) -> bool:
    """Whether someone with ``actor_role`` may change, remove or grant ``target_role``."""
    return rank(actor_role) > rank(target_role)


def require_above(actor_role: str, target_role: str, what: str) -> None:
    if not can_act_on(actor_role, target_role):
        raise AdminAuthError(
            f"A {actor_role} cannot {what} a {target_role}: no role acts on an equal or higher role",
            code="role_too_low",
            status_code=403,
        )


def at_most(role: str, ceiling: str) -> bool:
    """Whether ``role`` is no more than ``ceiling`` (a token's role never exceeds its person's)."""
    return rank(role) <= rank(ceiling)
