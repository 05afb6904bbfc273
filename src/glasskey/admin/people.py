"""Admin endpoints for people: sign-in (email, password, code → an access token), accounts, and one's own
password, second factor and access tokens.

Everything about "who" comes from the authenticated principal: ``/me/...`` acts on the caller,
and no body names a user or an org to act for. A token is shown once, in the answer that makes it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from pydantic import Field, StrictBool, StrictInt

from glasskey.admin.access import actor_of, client_address, error_responses, person_of, principal_of, request_id_of
from glasskey.admin.common import Body, list_body
from glasskey.errors import AdminAuthError
from glasskey.people.audit import Actor, record
from glasskey.people.members import memberships_of
from glasskey.people.passwords import PASSWORD_MAX_LENGTH
from glasskey.people.roles import OPERATOR, Role, at_most
from glasskey.people.signin import record_failed_sign_in, sign_in, token_after_sign_in
from glasskey.people.tables import EMAIL_MAX_LENGTH
from glasskey.people.throttle import Throttle, scopes
from glasskey.people.tokens import TOKEN_LIFETIME_MAX, create_token, list_tokens, revoke_own_token
from glasskey.people.totp import disable_totp_with_proof, enable_totp, new_totp_secret, provisioning_uri, reset_totp
from glasskey.people.users import change_password, create_user, get_user, list_users
from glasskey.services import Services

SHOWN_ONCE = "This is the only time the full token is shown: store it now. glasskey keeps only its hash."
Email = Field(min_length=3, max_length=EMAIL_MAX_LENGTH)
Password = Field(min_length=1, max_length=PASSWORD_MAX_LENGTH)
LifetimeDays = Field(default=30, ge=1, le=TOKEN_LIFETIME_MAX.days, description="days until the token expires")


class SignInBody(Body):
    email: str = Email
    password: str = Password
    code: str | None = Field(default=None, max_length=32, description="a TOTP code or a recovery code")
    org_id: str | None = Field(default=None, description="the org (id or name) to act in; needed with several")
    role: Role | None = Field(default=None, description="a lower role than yours, for a narrower token")
    token_name: str = Field(default="signed in", min_length=1, max_length=200)
    expires_in_days: StrictInt = LifetimeDays


class CreateUserBody(Body):
    email: str = Email
    password: str = Password
    operator: StrictBool = False


class PasswordBody(Body):
    current_password: str = Password
    new_password: str = Password


class TotpBody(Body):
    secret: str | None = Field(default=None, max_length=64, description="the secret from the first call")
    code: str | None = Field(default=None, max_length=8)
    current_code: str | None = Field(
        default=None,
        max_length=32,
        description="with TOTP already on: a current code of the old device (or a recovery code)",
    )


class TotpOffBody(Body):
    code: str | None = Field(default=None, max_length=32, description="a current TOTP code or a recovery code")
    password: str | None = Field(default=None, max_length=PASSWORD_MAX_LENGTH, description="or the password")


class TokenBody(Body):
    name: str = Field(min_length=1, max_length=200)
    role: Role | None = Field(default=None, description="at most the role in force; default: that role")
    expires_in_days: StrictInt = LifetimeDays


def people_router(services: Services, throttle: Throttle) -> APIRouter:
    router = APIRouter(tags=["people"])

    @router.post(
        "/signin",
        summary="Sign in: email, password and code for an access token",
        description=(
            "Checks the email, password and (when TOTP is on) the one-time or recovery code, and answers a new "
            "access token `gkp-…` scoped to one org and role, shown this once. Failures answer one message that "
            "never tells whether the email exists; too many from one address, for one account or on the whole "
            "gateway answer 429 with `retry-after`."
        ),
        responses=error_responses(401, 403, 429),
    )
    async def signin(body: SignInBody, request: Request) -> dict[str, Any]:
        attempt = scopes(client_address(request), body.email)
        await throttle.check(attempt)
        actor = Actor("anonymous", address=client_address(request), request_id=request_id_of(request))
        now = services.clock()
        try:
            with services.db.write() as conn:
                user = sign_in(
                    conn,
                    pepper=services.pepper,
                    email=body.email,
                    password=body.password,
                    code=body.code,
                    now=now,
                    actor=actor,
                )
                token, full = token_after_sign_in(
                    conn,
                    pepper=services.pepper,
                    user=user,
                    org_ref=body.org_id,
                    role=body.role,
                    name=body.token_name,
                    now=now,
                    lifetime=timedelta(days=body.expires_in_days),
                )
        except AdminAuthError as refusal:
            await throttle.fail(attempt)
            with services.db.write() as conn:
                record_failed_sign_in(conn, email=body.email, reason=refusal.code or "", now=now, actor=actor)
            raise
        return {**token.public(), "token": full, "token_note": SHOWN_ONCE}

    @router.get("/users", summary="List people's accounts", description="Every account; never a password hash.")
    def read_users() -> dict[str, Any]:
        with services.db.read() as conn:
            return list_body([user.public() for user in list_users(conn)])

    @router.post(
        "/users",
        status_code=201,
        summary="Create an account",
        description="An account with an email and a password that meets the policy; `operator` makes an operator.",
        responses=error_responses(409),
    )
    def create(body: CreateUserBody, request: Request) -> dict[str, Any]:
        now = services.clock()
        with services.db.write() as conn:
            user = create_user(conn, body.email, body.password, now, is_operator=body.operator)
            record(conn, actor_of(request), "user.create", now, target=user.email, after=user.public())
        return user.public()

    @router.post(
        "/users/{user_id}/totp/reset",
        summary="Reset an account's second factor (operator)",
        description=(
            "Turns the account's TOTP off and deletes its recovery codes, with no proof: for a person who lost "
            "the device. `user_id` is the account's id or email. They then sign in with the password alone and "
            "may set up a new device. Audited as `user.totp_reset`; 409 `totp_not_enabled` if it was off."
        ),
        responses=error_responses(404, 409),
    )
    def totp_reset(user_id: str, request: Request) -> dict[str, Any]:
        now = services.clock()
        with services.db.write() as conn:
            user = get_user(conn, user_id)
            reset_totp(conn, user.id)
            record(conn, actor_of(request), "user.totp_reset", now, target=user.email)
            return get_user(conn, user.id).public()

    @router.get("/me", summary="Who am I", description="The caller's account, role in force, org and memberships.")
    def me(request: Request) -> dict[str, Any]:
        principal = principal_of(request)
        if principal.user_id is None:
            return {"object": "principal", "role": OPERATOR, "user": None, "org_id": None, "memberships": []}
        with services.db.read() as conn:
            user = get_user(conn, principal.user_id)
            joined = [membership.public() for membership in memberships_of(conn, user.id)]
        return {
            "object": "principal",
            "role": principal.role,
            "user": user.public(),
            "org_id": principal.org_id,
            "memberships": joined,
        }

    @router.post(
        "/me/password",
        summary="Change my password",
        description="Needs the current password. Every access token and dashboard session made before ends.",
        responses=error_responses(401),
    )
    def password(body: PasswordBody, request: Request) -> dict[str, Any]:
        principal = person_of(request)
        assert principal.user_id is not None
        now = services.clock()
        with services.db.write() as conn:
            user = change_password(conn, principal.user_id, body.current_password, body.new_password, now)
            record(conn, actor_of(request), "user.password_change", now, org_id=principal.org_id, target=user.email)
        return user.public()

    async def refused_proof(request: Request, attempt: list[tuple[str, str]], action: str, reason: str) -> None:
        """A wrong code or password: counted in the sign-in throttle, and audited as the dashboard does,
        in a transaction of its own (the attempt's own was rolled back)."""
        principal = person_of(request)
        await throttle.fail(attempt)
        now = services.clock()

        def write() -> None:
            with services.db.write() as conn:
                record(
                    conn, actor_of(request), action, now, org_id=principal.org_id, target=principal.email,
                    outcome="failed", after={"reason": reason},
                )  # fmt: skip

        await anyio.to_thread.run_sync(write)

    @router.post(
        "/me/totp",
        summary="Turn on the second factor",
        description=(
            "Call once with no body fields for a new secret (and its `otpauth://` URI for an app); call again with "
            "that `secret` and a current `code` to turn TOTP on. The answer then holds ten recovery codes, shown once. "
            "With TOTP already on, the new device replaces the old only with `current_code`, a fresh code of the "
            "old device (or a recovery code); without it the answer is 409 `totp_already_on` (turn it off first). "
            "A wrong `current_code` counts in the sign-in throttle and is audited."
        ),
        responses=error_responses(401, 409, 429),
    )
    async def totp(body: TotpBody, request: Request) -> dict[str, Any]:
        principal = person_of(request)
        assert principal.user_id is not None
        user_id = principal.user_id
        if body.secret is None:
            secret = new_totp_secret()
            return {"object": "totp.secret", "secret": secret, "otpauth_uri": provisioning_uri(secret, principal.email)}
        secret_sent = body.secret
        attempt = scopes(client_address(request), principal.email)
        if body.current_code:
            await throttle.check(attempt)  # a proof of the old device is a guess like any other
        now = services.clock()

        def work() -> list[str]:
            with services.db.write() as conn:
                codes = enable_totp(
                    conn,
                    user_id,
                    pepper=services.pepper,
                    secret=secret_sent,
                    code=body.code or "",
                    now=now,
                    current_code=body.current_code,
                )
                record(
                    conn, actor_of(request), "user.totp_enable", now, org_id=principal.org_id, target=principal.email
                )
                return codes

        try:
            codes = await anyio.to_thread.run_sync(work)
        except AdminAuthError as refused:
            await refused_proof(request, attempt, "user.totp_enable", refused.code or "")
            raise
        return {
            "object": "totp.enabled",
            "recovery_codes": codes,
            "note": "Each recovery code works once; store them now.",
        }

    @router.post(
        "/me/totp/disable",
        summary="Turn off the second factor",
        description=(
            "Needs a fresh `code` (a code already accepted, such as the one that turned TOTP on, is refused; a "
            "recovery code works) or the `password`. A wrong one counts in the sign-in throttle and is audited "
            "(`user.totp_disable`, outcome `failed`)."
        ),
        responses=error_responses(401, 429),
    )
    async def totp_disable(body: TotpOffBody, request: Request) -> dict[str, Any]:
        principal = person_of(request)
        assert principal.user_id is not None
        user_id = principal.user_id
        attempt = scopes(client_address(request), principal.email)
        await throttle.check(attempt)
        now = services.clock()

        def work() -> dict[str, Any]:
            with services.db.write() as conn:
                disable_totp_with_proof(
                    conn, user_id, pepper=services.pepper, code=body.code or "", password=body.password or "", now=now
                )
                record(
                    conn, actor_of(request), "user.totp_disable", now, org_id=principal.org_id, target=principal.email
                )
                return get_user(conn, user_id).public()

        try:
            return await anyio.to_thread.run_sync(work)
        except AdminAuthError as refused:
            await refused_proof(request, attempt, "user.totp_disable", refused.code or "")
            raise

    @router.get("/me/tokens", summary="List my access tokens", description="Never a token's secret.")
    def read_tokens(request: Request) -> dict[str, Any]:
        principal = person_of(request)
        assert principal.user_id is not None
        with services.db.read() as conn:
            return list_body([token.public() for token in list_tokens(conn, principal.user_id)])

    @router.post(
        "/me/tokens",
        status_code=201,
        summary="Create an access token for me",
        description="In the org and at most the role of the token used to call; the full token is shown once.",
        responses=error_responses(403),
    )
    def create_my_token(body: TokenBody, request: Request) -> dict[str, Any]:
        principal = person_of(request)
        assert principal.user_id is not None
        role = body.role or principal.role
        if not at_most(role, principal.role):
            raise AdminAuthError(f"A {principal.role} cannot make a {role} token", code="role_too_low", status_code=403)
        now = services.clock()
        with services.db.write() as conn:
            token, full = create_token(
                conn,
                pepper=services.pepper,
                user_id=principal.user_id,
                org_id=principal.org_id,
                role=role,
                name=body.name,
                now=now,
                lifetime=timedelta(days=body.expires_in_days),
            )
            record(
                conn,
                actor_of(request),
                "token.create",
                now,
                org_id=principal.org_id,
                target=token.prefix,
                after=token.public(),
            )
        return {**token.public(), "token": full, "token_note": SHOWN_ONCE}

    @router.post(
        "/me/tokens/{token_id}/revoke",
        summary="Revoke one of my access tokens",
        description="From now on the token is refused. Another person's token answers 404.",
        responses=error_responses(404),
    )
    def revoke(token_id: str, request: Request) -> dict[str, Any]:
        principal = person_of(request)
        now = services.clock()
        with services.db.write() as conn:
            assert principal.user_id is not None
            revoked = revoke_own_token(conn, principal.user_id, token_id, now)
            record(conn, actor_of(request), "token.revoke", now, org_id=principal.org_id, target=revoked.prefix)
        return revoked.public()

    return router
