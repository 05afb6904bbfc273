"""Who may call which admin endpoint and open which dashboard page: the one table, and its guard.

``ADMIN_ACCESS`` and ``DASHBOARD_ACCESS`` list every endpoint and page with the org roles allowed on
it; ``docs/roles.md`` is this table in prose, and a test checks the two agree and that every route
the app serves has a row. The operator (admin token or operator account) may call everything.

A rule's ``scope`` says where the org of the thing acted on comes from: the path (``org``), the
key or receipt named in the path (``key``, ``receipt``), the query (``org_query``: its ``org_id``;
``receipts_query``: its ``org_id`` or ``key_id``), or the caller itself (``self``). It never comes
from the body. A record of another org answers 404, exactly like one that does not exist; a role too
low answers 403. Both are audited.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from sqlalchemy import Connection

from glasskey.admin.common import ErrorResponse
from glasskey.admin.common import error_responses as common_error_responses
from glasskey.errors import AdminAuthError, ClientError, GlasskeyError, NotFound
from glasskey.keys.service import get_key
from glasskey.orgs.service import get_org
from glasskey.people.audit import Actor, record
from glasskey.people.holders import answers_for, holder_of
from glasskey.people.principal import Principal
from glasskey.receipts.records import get_receipt
from glasskey.services import Services

ALL = frozenset({"owner", "billing", "member", "viewer"})
NONE: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Rule:
    """``roles`` may act on any record of their org; ``own`` only on keys they hold or answer for.

    On an ``org`` scope, ``own`` lets the role through to an endpoint of its own org whose handler
    narrows the answer to the caller's keys (``GET /orgs/{org_id}/audit/key-use``).
    """

    scope: str
    roles: frozenset[str] = NONE
    own: frozenset[str] = NONE


OPERATOR_ONLY = Rule("operator")
PUBLIC = Rule("public")


# What the refusals of people and roles mean, in the OpenAPI document (the rest: admin.common).
_REFUSALS = {
    401: "The admin token or access token is missing, wrong, revoked or expired (`source: key`).",
    403: "The caller's role may not do this, or it would exceed a limit (`source: key`, `code` says which).",
    429: "Too many failed sign-ins from this address, for this account or on the gateway; wait `retry-after` "
    "seconds (`source: key`).",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``admin.common.error_responses``, knowing also the refusals of authentication and roles."""
    documented = common_error_responses(*(status for status in statuses if status not in _REFUSALS))
    for status in statuses:
        if status in _REFUSALS:
            documented[status] = {"model": ErrorResponse, "description": _REFUSALS[status]}
    return documented


def _rule(scope: str, roles: str = "", own: str = "") -> Rule:
    return Rule(scope, frozenset(roles.split()), frozenset(own.split()))


ADMIN_ACCESS: dict[tuple[str, str], Rule] = {
    # Orgs, wallets and the ledger.
    ("GET", "/orgs"): OPERATOR_ONLY,
    ("POST", "/orgs"): OPERATOR_ONLY,
    ("GET", "/orgs/{org_id}"): _rule("org", "owner billing member viewer"),
    ("GET", "/orgs/{org_id}/wallets"): _rule("org", "owner billing member viewer"),
    ("GET", "/orgs/{org_id}/wallets/{kind}"): _rule("org", "owner billing member viewer"),
    ("POST", "/orgs/{org_id}/wallets/{kind}/topups"): _rule("org", "owner billing"),
    ("GET", "/orgs/{org_id}/wallets/{kind}/ledger"): _rule("org", "owner billing viewer"),
    ("GET", "/ledger/audit"): OPERATOR_ONLY,
    # Keys: the operator's endpoints, open to an org's people where no body names the org.
    ("GET", "/keys"): _rule("org_query", "owner billing viewer"),
    ("POST", "/keys"): OPERATOR_ONLY,
    ("GET", "/keys/{key_id}"): _rule("key", "owner billing viewer", "member"),
    ("PATCH", "/keys/{key_id}"): _rule("key", "owner"),
    ("POST", "/keys/{key_id}/revoke"): _rule("key", "owner", "member"),
    ("GET", "/keys/{key_id}/explain"): _rule("key", "owner billing viewer", "member"),
    # Routes, providers and prices stay the operator's.
    ("GET", "/routes"): OPERATOR_ONLY,
    ("POST", "/routes"): OPERATOR_ONLY,
    ("GET", "/routes/{route_id}"): OPERATOR_ONLY,
    ("PATCH", "/routes/{route_id}"): OPERATOR_ONLY,
    ("POST", "/routes/{route_id}/breaker"): OPERATOR_ONLY,
    ("GET", "/health"): OPERATOR_ONLY,
    ("GET", "/models"): _rule("self"),
    ("GET", "/models/{name}"): _rule("self"),
    ("PUT", "/models/{name}/price"): OPERATOR_ONLY,
    # Receipts.
    ("GET", "/receipts"): _rule("receipts_query", "owner billing viewer", "member"),
    ("GET", "/receipts/{request_id}"): _rule("receipt", "owner billing viewer", "member"),
    # Research jobs of every key (a key sees its own through /v1/research).
    ("GET", "/research/jobs"): OPERATOR_ONLY,
    ("GET", "/research/jobs/{job_id}"): OPERATOR_ONLY,
    # People: accounts, sign-in, tokens, members, limits, invitations, offboarding, audit log.
    ("POST", "/signin"): PUBLIC,
    ("POST", "/invitations/accept"): PUBLIC,
    ("GET", "/users"): OPERATOR_ONLY,
    ("POST", "/users"): OPERATOR_ONLY,
    ("POST", "/users/{user_id}/totp/reset"): OPERATOR_ONLY,
    ("GET", "/me"): _rule("self"),
    ("POST", "/me/password"): _rule("self"),
    ("POST", "/me/totp"): _rule("self"),
    ("POST", "/me/totp/disable"): _rule("self"),
    ("GET", "/me/tokens"): _rule("self"),
    ("POST", "/me/tokens"): _rule("self"),
    ("POST", "/me/tokens/{token_id}/revoke"): _rule("self"),
    ("GET", "/me/keys"): _rule("self"),
    ("POST", "/me/keys"): _rule("self"),
    ("GET", "/orgs/{org_id}/members"): _rule("org", "owner billing member viewer"),
    ("POST", "/orgs/{org_id}/members"): _rule("org", "owner"),
    ("PATCH", "/orgs/{org_id}/members/{user_id}"): _rule("org", "owner"),
    ("POST", "/orgs/{org_id}/members/{user_id}/offboarding/preview"): _rule("org", "owner"),
    ("POST", "/orgs/{org_id}/members/{user_id}/offboarding/confirm"): _rule("org", "owner"),
    ("GET", "/orgs/{org_id}/limits"): _rule("org", "owner billing member viewer"),
    ("PUT", "/orgs/{org_id}/limits"): _rule("org", "owner"),
    ("GET", "/orgs/{org_id}/invitations"): _rule("org", "owner"),
    ("POST", "/orgs/{org_id}/invitations"): _rule("org", "owner"),
    ("POST", "/orgs/{org_id}/invitations/{invitation_id}/revoke"): _rule("org", "owner"),
    # The org's log names colleagues, their addresses and every key's policy: owners only (issue 17).
    # Key use: every key's for owner and billing, a member's own and their services' (the handler narrows).
    ("GET", "/orgs/{org_id}/audit"): _rule("org", "owner"),
    ("GET", "/orgs/{org_id}/audit/key-use"): _rule("org", "owner billing", "member"),
    ("GET", "/orgs/{org_id}/alerts"): _rule("org", "owner billing member viewer"),
    ("GET", "/orgs/{org_id}/alerts/rules"): _rule("org", "owner billing member viewer"),
    ("PUT", "/orgs/{org_id}/alerts/rules"): _rule("org", "owner"),
    ("DELETE", "/orgs/{org_id}/alerts/rules/{rule_id}"): _rule("org", "owner"),
    ("GET", "/orgs/{org_id}/alerts/webhook"): _rule("org", "owner"),
    ("PUT", "/orgs/{org_id}/alerts/webhook"): _rule("org", "owner"),
    ("DELETE", "/orgs/{org_id}/alerts/webhook"): _rule("org", "owner"),
    ("POST", "/orgs/{org_id}/alerts/webhook/test"): _rule("org", "owner"),
    ("GET", "/orgs/{org_id}/alerts/deliveries"): _rule("org", "owner"),
    ("GET", "/audit"): OPERATOR_ONLY,
    ("GET", "/audit/verify"): OPERATOR_ONLY,
}

# People signing in to the dashboard by email see their own page (``/me``: their org's wallets and
# the keys and receipts their role may read) and their org's people pages (members, invitations,
# limits, audit log) as their role allows; every other page is the operator's (see docs/roles.md).
DASHBOARD_ACCESS: dict[tuple[str, str], Rule] = {
    ("GET", "/signin"): PUBLIC,
    ("POST", "/signin"): PUBLIC,
    ("POST", "/signout"): _rule("self"),
    ("GET", "/invitation"): PUBLIC,
    ("POST", "/invitation"): PUBLIC,
    ("GET", "/me"): _rule("self"),
    ("POST", "/me/org"): _rule("self"),
    ("GET", "/me/keys/new"): _rule("org", "owner billing member"),
    ("POST", "/me/keys/new"): _rule("org", "owner billing member"),
    # A person's own account: password, second factor, access tokens (always the session's person).
    ("GET", "/account"): _rule("self"),
    ("POST", "/account/password"): _rule("self"),
    ("GET", "/account/totp"): _rule("self"),
    ("POST", "/account/totp"): _rule("self"),
    ("POST", "/account/totp/disable"): _rule("self"),
    ("POST", "/account/tokens"): _rule("self"),
    ("POST", "/account/tokens/{token_id}/revoke"): _rule("self"),
    # An org's people pages: the org is the session's (a person's) or ``?org=`` (the operator's).
    ("GET", "/members"): _rule("org", "owner billing member viewer"),
    ("POST", "/members/{user_id}/role"): _rule("org", "owner"),
    ("GET", "/members/{user_id}/remove"): _rule("org", "owner"),
    ("POST", "/members/{user_id}/remove"): _rule("org", "owner"),
    ("GET", "/invitations"): _rule("org", "owner"),
    ("POST", "/invitations"): _rule("org", "owner"),
    ("POST", "/invitations/{invitation_id}/revoke"): _rule("org", "owner"),
    ("GET", "/limits"): _rule("org", "owner billing member viewer"),
    ("POST", "/limits"): _rule("org", "owner"),
    ("GET", "/audit"): _rule("org", "owner"),
    ("GET", "/audit.csv"): _rule("org", "owner"),
    ("GET", "/alerts"): _rule("org", "owner billing member viewer"),
    ("POST", "/alerts/rules"): _rule("org", "owner"),
    ("POST", "/alerts/rules/{rule_id}/delete"): _rule("org", "owner"),
    ("POST", "/alerts/webhook"): _rule("org", "owner"),
    ("POST", "/alerts/test"): _rule("org", "owner"),
    ("GET", "/"): OPERATOR_ONLY,
    ("GET", "/keys"): OPERATOR_ONLY,
    ("GET", "/keys/new"): OPERATOR_ONLY,
    ("POST", "/keys/new"): OPERATOR_ONLY,
    ("GET", "/keys/{key_id}"): OPERATOR_ONLY,
    ("GET", "/keys/{key_id}/revoke"): OPERATOR_ONLY,
    ("POST", "/keys/{key_id}/revoke"): OPERATOR_ONLY,
    ("GET", "/wallets"): OPERATOR_ONLY,
    ("POST", "/wallets/topup"): OPERATOR_ONLY,
    ("POST", "/orgs"): OPERATOR_ONLY,
    ("GET", "/receipts"): OPERATOR_ONLY,
    ("GET", "/receipts.csv"): OPERATOR_ONLY,
    ("GET", "/receipts/{request_id}"): OPERATOR_ONLY,
    ("GET", "/failures"): OPERATOR_ONLY,
    ("GET", "/routes"): OPERATOR_ONLY,
    ("GET", "/models"): OPERATOR_ONLY,
    ("GET", "/research"): OPERATOR_ONLY,
    ("GET", "/research/new"): OPERATOR_ONLY,
    ("POST", "/research/new"): OPERATOR_ONLY,
    ("POST", "/research/confirm"): OPERATOR_ONLY,
    ("GET", "/research/{job_id}"): OPERATOR_ONLY,
    ("GET", "/research/{job_id}/report.{fmt}"): OPERATOR_ONLY,
}


def principal_of(request: Request) -> Principal:
    principal = request.scope.get("state", {}).get("principal")
    if not isinstance(principal, Principal):
        raise AdminAuthError("Missing credentials", code="missing_admin_token")
    return principal


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else ""


def _forbidden(principal: Principal, what: str) -> AdminAuthError:
    return AdminAuthError(f"A {principal.role} may not {what}", code="role_forbidden", status_code=403)


def _check_key(conn: Connection, principal: Principal, rule: Rule, key_ref: str, what: str) -> None:
    key = get_key(conn, key_ref)
    if key.org_id != principal.org_id:
        raise NotFound(f"key {key_ref} does not exist")
    if principal.role in rule.roles:
        return
    if principal.role in rule.own and answers_for(holder_of(conn, key.id), principal.user_id):
        return
    raise _forbidden(
        principal, f"{what} (only on keys they hold or answer for)" if principal.role in rule.own else what
    )


def _check_org(conn: Connection, principal: Principal, rule: Rule, org_ref: str, what: str) -> None:
    org = get_org(conn, org_ref)
    if org.id != principal.org_id:
        raise NotFound(f"org {org_ref} does not exist")
    if principal.role not in rule.roles | rule.own:
        raise _forbidden(principal, what)


def _check_receipts_query(
    conn: Connection, principal: Principal, rule: Rule, params: dict[str, Any], what: str
) -> None:
    """Receipts are listed by org (``org_id``) or by key (``key_id``); every one named must be the caller's."""
    key_ref, org_ref = params.get("key_id"), params.get("org_id")
    if org_ref and get_org(conn, org_ref).id != principal.org_id:
        raise NotFound(f"org {org_ref} does not exist")
    if key_ref:
        _check_key(conn, principal, rule, key_ref, what)
    elif not org_ref:
        raise ClientError("Name your org (?org_id=) or one of its keys (?key_id=)", param="org_id")
    elif principal.role in rule.own and principal.role not in rule.roles:
        raise ClientError(f"A {principal.role} lists by key: add ?key_id=<one of your keys>", param="key_id")
    elif principal.role not in rule.roles:
        raise _forbidden(principal, what)


def check_access(conn: Connection, principal: Principal, rule: Rule, what: str, params: dict[str, Any]) -> None:
    """Raise unless ``principal`` may do ``what`` under ``rule``; ``params`` are the path and query values."""
    if principal.is_operator or rule.scope == "public":
        return
    if rule.scope == "self":
        return
    if rule.scope == "operator" or principal.org_id is None:
        raise _forbidden(principal, f"{what}: it is the operator's")
    if rule.scope == "org":
        _check_org(conn, principal, rule, params["org_id"], what)
    elif rule.scope == "key":
        _check_key(conn, principal, rule, params["key_id"], what)
    elif rule.scope == "receipt":
        receipt = get_receipt(conn, params["request_id"])
        if receipt.get("org_id") != principal.org_id or not receipt.get("key_id"):
            raise NotFound(f"receipt {params['request_id']} does not exist")
        _check_key(conn, principal, rule, receipt["key_id"], what)
    elif rule.scope == "org_query":
        # Only ``org_id`` counts here: the endpoint filters by nothing else, so nothing else may vouch for it.
        if not params.get("org_id"):
            raise ClientError("Name your org: add ?org_id=<your org>", param="org_id")
        _check_org(conn, principal, rule, params["org_id"], what)
    elif rule.scope == "receipts_query":
        _check_receipts_query(conn, principal, rule, params, what)
    else:  # a rule with a scope this guard does not know must never let anything through
        raise _forbidden(principal, what)


def rule_for(table: dict[tuple[str, str], Rule], method: str, path: str) -> Rule:
    return table.get((method, path), OPERATOR_ONLY)


def guard(services: Services) -> Any:
    """The FastAPI dependency run before every admin endpoint."""

    def authorize(request: Request) -> None:
        route = request.scope.get("route")
        path = getattr(route, "path", request.url.path)
        rule = rule_for(ADMIN_ACCESS, request.method, path)
        if rule.scope == "public":
            return
        principal = principal_of(request)
        if principal.is_operator or rule.scope == "self":
            return
        params = {**request.query_params, **request.path_params}
        what = f"call {request.method} {path}"
        try:
            with services.db.read() as conn:
                check_access(conn, principal, rule, what, params)
        except GlasskeyError as denial:
            with services.db.write() as conn:
                record(
                    conn,
                    actor_of(request),
                    "denied",
                    services.clock(),
                    org_id=principal.org_id,
                    target=f"{request.method} {request.url.path}",
                    outcome="denied",
                    after={"status": denial.status_code, "reason": denial.message},
                )
            raise

    return authorize


def request_id_of(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def actor_of(request: Request) -> Actor:
    """The audit log's actor for this request: the principal, its address and the request id."""
    return principal_of(request).actor(client_address(request), request_id_of(request))


def person_of(request: Request) -> Principal:
    """The principal, when it is a person rather than the admin token (what ``/me/...`` needs)."""
    principal = principal_of(request)
    if principal.user_id is None:
        raise ClientError("The admin token is not a person: sign in as one (POST /signin) for this endpoint")
    return principal


def role_cells(rule: Rule) -> list[str]:
    """A rule as the cells of docs/roles.md: operator, owner, billing, member, viewer."""
    if rule.scope == "public":
        return ["anyone"] * 5
    if rule.scope == "self":
        return ["yes"] * 5
    return ["yes"] + [
        "yes" if role in rule.roles else ("own" if role in rule.own else "no")
        for role in ("owner", "billing", "member", "viewer")
    ]


def roles_table_rows() -> list[str]:
    """Every row of the table in docs/roles.md, from the table in code."""
    rows = []
    for surface, table in (("API", ADMIN_ACCESS), ("page", DASHBOARD_ACCESS)):
        for (method, path), rule in table.items():
            rows.append(f"| {surface} | {method} | `{path}` | " + " | ".join(role_cells(rule)) + " |")
    return rows


def _template_pattern(path: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(path)) + "$")


_PAGE_PATTERNS = [(method, _template_pattern(path), rule) for (method, path), rule in DASHBOARD_ACCESS.items()]


def page_allowed(method: str, path: str, role: str) -> bool:
    """Whether a dashboard session with ``role`` may open this page (HEAD counts as GET)."""
    method = "GET" if method == "HEAD" else method
    for rule_method, pattern, rule in _PAGE_PATTERNS:
        if rule_method == method and pattern.match(path):
            return role == "operator" or rule.scope in ("public", "self") or role in rule.roles
    return role == "operator"
