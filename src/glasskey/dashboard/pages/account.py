"""A person's own account (``/account``): their password, their second factor and their access tokens.

Each form calls the domain function the admin API's ``/me/...`` endpoints call (``change_password``,
``enable_totp``, ``create_token``, ``revoke_own_token``) and writes its own audit event. The person is
the session's, never a form field. A password change ends every other session and token of the
person (the credential version moves) and starts this session anew, with a new CSRF token. A wrong
current password or code counts in the sign-in throttle, so a stolen session cannot guess the
password here; a throttled form answers 429 with ``retry-after``. A secret (a token, the recovery
codes) is the answer to the POST that made it, never a page that can be fetched again, and the token
form's one-time nonce keeps a resent form from making a second token. The operator (the admin
token) has no account: it goes to ``/``.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from glasskey.dashboard.acting import Acting, acting, page_context
from glasskey.dashboard.auth import end_session, person_of, start_person_session
from glasskey.dashboard.forms import FieldError, form_text, parse_optional_count
from glasskey.dashboard.web import Dashboard, flash, read_form, redirect, request_id_of
from glasskey.errors import AdminAuthError, ClientError
from glasskey.orgs.service import list_orgs
from glasskey.people.audit import Actor, record
from glasskey.people.passwords import PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH
from glasskey.people.roles import ROLES, at_most
from glasskey.people.throttle import scopes
from glasskey.people.tokens import (
    TOKEN_LIFETIME_DEFAULT,
    TOKEN_LIFETIME_MAX,
    AccessToken,
    create_token,
    list_tokens,
    revoke_own_token,
)
from glasskey.people.totp import (
    disable_totp_with_proof,
    enable_totp,
    new_totp_secret,
    provisioning_uri,
    recovery_codes_left,
)
from glasskey.people.users import User, change_password, get_user

# Where a domain error's ``param`` is shown on these forms.
PASSWORD_FIELDS = {"password": "new_password"}
TOKEN_FIELDS = {"name": "token_name", "expires_in_days": "token_days", "role": "token_role"}
# The token form's one-time nonce in the session, as for a person's key (``my_keys``): each page
# shown carries a new one, creating consumes it, so a resent form never makes a second token.
TOKEN_NONCE_FIELD = "token_nonce"
TOKEN_FORM_USED = (
    "This form was already used to make a token, or it is out of date. A token is shown only once: "
    "find it in the list below, or make a new one."
)


def token_status(token: AccessToken, now: Any) -> str:
    if token.revoked_at is not None:
        return "revoked"
    return "expired" if token.expires_at <= now else "active"


def account_view(conn: Connection, found: Acting, now: Any) -> dict[str, Any]:
    assert found.principal.user_id is not None
    user = get_user(conn, found.principal.user_id)
    names = {org.id: org.name for org in list_orgs(conn)}
    tokens = list(reversed(list_tokens(conn, user.id)))  # newest first
    return {
        **page_context(found, "account"),
        "user": user,
        "recovery_codes_left": recovery_codes_left(conn, user.id) if user.totp_enabled else 0,
        "tokens": [(token, names.get(token.org_id or "", "every org"), token_status(token, now)) for token in tokens],
        "token_roles": [role for role in ROLES if at_most(role, found.role)],
        "token_days_default": TOKEN_LIFETIME_DEFAULT.days,
        "token_days_max": TOKEN_LIFETIME_MAX.days,
        "password_min": PASSWORD_MIN_LENGTH,
        "password_max": PASSWORD_MAX_LENGTH,
        "errors": {},
        "values": {"token_name": "", "token_role": found.role, "token_days": str(TOKEN_LIFETIME_DEFAULT.days)},
    }


def field_of(error: Exception, fields: dict[str, str], default: str) -> str:
    """The form field a domain error is about (its ``param``, renamed for this page's forms)."""
    param = error.param if isinstance(error, ClientError) else None
    return fields.get(param or "", default)


def routes(dash: Dashboard) -> list[Route]:
    services = dash.services
    throttle = services.signin_throttle

    async def current(request: Request) -> Acting | None:
        person = person_of(request.session)
        assert person is not None
        return await dash.read(lambda conn: acting(conn, person, None))

    def address(request: Request) -> str:
        return request.client.host if request.client is not None else ""

    async def page(request: Request, found: Acting, status_code: int = 200, **changes: Any) -> Response:
        now = services.clock()
        view = await dash.read(lambda conn: account_view(conn, found, now))
        view["errors"] = changes.pop("errors", {})
        view["values"] = {**view["values"], **changes.pop("values", {})}
        view["token_nonce"] = request.session[TOKEN_NONCE_FIELD] = secrets.token_urlsafe(16)
        headers = changes.pop("headers", {})
        response = dash.render(request, "account.html", {**view, **changes}, status_code=status_code)
        response.headers.update(headers)  # a throttled answer's retry-after
        return response

    async def record_failure(actor: Actor, action: str, reason: str, found: Acting) -> None:
        """A refused proof (password or code), in its own transaction: the attempt's own rolled back."""
        now = services.clock()
        await dash.write(
            lambda conn: record(
                conn, actor, action, now, org_id=found.principal.org_id, target=found.principal.email,
                outcome="failed", after={"reason": reason},
            )
        )  # fmt: skip

    def guarded(handler: Any) -> Any:
        """The handler, for a person whose session is still good; the operator goes to ``/``."""

        async def run(request: Request) -> Response:
            form = await read_form(request) if request.method == "POST" else None
            if person_of(request.session) is None:
                return redirect("/")
            found = await current(request)
            if found is None:
                end_session(request.session)
                return redirect("/signin")
            return await handler(request, found, form)  # type: ignore[no-any-return]

        return run

    async def account(request: Request, found: Acting, _form: FormData | None) -> Response:
        return await page(request, found)

    async def password(request: Request, found: Acting, form: FormData) -> Response:
        principal = found.principal
        assert principal.user_id is not None
        current_password, new_password = str(form.get("current_password", "")), str(form.get("new_password", ""))
        if not current_password:
            return await page(request, found, 400, errors={"current_password": "Type your current password"})
        if new_password != str(form.get("new_password_again", "")):
            return await page(request, found, 400, errors={"new_password_again": "The two new passwords differ"})
        attempt = scopes(address(request), principal.email)
        try:
            await throttle.check(attempt)
        except AdminAuthError as throttled:
            return await page(
                request, found, 429, errors={"current_password": throttled.message}, headers=throttled.headers
            )
        actor = principal.actor(address(request), request_id_of(request))
        now = services.clock()

        def work(conn: Connection) -> User:
            assert principal.user_id is not None
            user = change_password(conn, principal.user_id, current_password, new_password, now)
            record(conn, actor, "user.password_change", now, org_id=principal.org_id, target=user.email)
            return user

        try:
            user = await dash.write(work)
        except AdminAuthError:
            await throttle.fail(attempt)
            await record_failure(actor, "user.password_change", "wrong current password", found)
            return await page(request, found, 401, errors={"current_password": "That is not your current password"})
        except ClientError as refused:
            return await page(
                request, found, 400, errors={field_of(refused, PASSWORD_FIELDS, "new_password"): refused.message}
            )
        assert principal.org_id is not None
        # Every other session ended with the old credential version; this one starts anew (new CSRF token).
        start_person_session(
            request.session,
            user_id=user.id,
            email=user.email,
            org_id=principal.org_id,
            role=principal.role,
            credential_version=user.credential_version,
        )
        flash(request, "Your password is changed. Every other session and every access token you had has ended.")
        return redirect("/account")

    async def totp_setup(request: Request, found: Acting, _form: FormData | None) -> Response:
        return await setup_page(request, found, new_totp_secret())

    async def setup_page(
        request: Request, found: Acting, secret: str, status_code: int = 200, errors: dict[str, str] | None = None
    ) -> Response:
        assert found.principal.user_id is not None
        user_id = found.principal.user_id
        user = await dash.read(lambda conn: get_user(conn, user_id))
        if user.totp_enabled:
            flash(request, "The second factor is already on: turn it off first to set up another device.")
            return redirect("/account")
        context = {
            **page_context(found, "account"),
            "secret": secret,
            "otpauth_uri": provisioning_uri(secret, user.email),
            "errors": errors or {},
        }
        return dash.render(request, "account_totp.html", context, status_code=status_code)

    async def totp_confirm(request: Request, found: Acting, form: FormData) -> Response:
        principal = found.principal
        secret, code = form_text(form, "secret"), form_text(form, "code")
        actor = principal.actor(address(request), request_id_of(request))
        now = services.clock()

        def work(conn: Connection) -> list[str]:
            assert principal.user_id is not None
            # With no proof of the old device, ``enable_totp`` refuses to replace an active factor
            # (``totp_already_on``): here a second device comes only after the first is turned off.
            codes = enable_totp(conn, principal.user_id, pepper=services.pepper, secret=secret, code=code, now=now)
            record(conn, actor, "user.totp_enable", now, org_id=principal.org_id, target=principal.email)
            return codes

        try:
            codes = await dash.write(work)
        except ClientError as refused:
            if refused.code == "totp_already_on":
                flash(request, "The second factor is already on: turn it off first to set up another device.")
                return redirect("/account")
            fresh = secret if refused.param != "secret" else new_totp_secret()
            return await setup_page(request, found, fresh, 400, {refused.param or "code": refused.message})
        context = {**page_context(found, "account"), "recovery_codes": codes, "replace_url": "/account"}
        return dash.render(request, "account_recovery_codes.html", context)

    async def totp_disable(request: Request, found: Acting, form: FormData) -> Response:
        principal = found.principal
        code, given_password = form_text(form, "code"), str(form.get("password", ""))
        attempt = scopes(address(request), principal.email)
        try:
            await throttle.check(attempt)
        except AdminAuthError as throttled:
            return await page(request, found, 429, errors={"totp_code": throttled.message}, headers=throttled.headers)
        actor = principal.actor(address(request), request_id_of(request))
        now = services.clock()

        def work(conn: Connection) -> None:
            assert principal.user_id is not None
            disable_totp_with_proof(
                conn, principal.user_id, pepper=services.pepper, code=code, password=given_password, now=now
            )
            record(conn, actor, "user.totp_disable", now, org_id=principal.org_id, target=principal.email)

        try:
            await dash.write(work)
        except AdminAuthError as refused:
            await throttle.fail(attempt)
            await record_failure(actor, "user.totp_disable", refused.code or "", found)
            field = "totp_code" if code else "totp_password"
            return await page(request, found, 401, errors={field: refused.message})
        except ClientError as refused:
            return await page(request, found, 400, errors={"totp_code": refused.message})
        flash(request, "The second factor is off: signing in needs only your password now.")
        return redirect("/account")

    async def token_create(request: Request, found: Acting, form: FormData) -> Response:
        principal = found.principal
        values = {name: form_text(form, name) for name in ("token_name", "token_role", "token_days")}
        sent = form_text(form, "nonce")
        if not sent or request.session.get(TOKEN_NONCE_FIELD) != sent:
            return await page(request, found, 409, errors={"token_name": TOKEN_FORM_USED})
        try:
            days = parse_optional_count(values["token_days"], maximum=TOKEN_LIFETIME_MAX.days)
            if days == 0:
                raise FieldError("a token lives at least one day")
        except FieldError as wrong:
            return await page(request, found, 400, errors={"token_days": str(wrong)}, values=values)
        lifetime = timedelta(days=days) if days is not None else TOKEN_LIFETIME_DEFAULT
        actor = principal.actor(address(request), request_id_of(request))
        now = services.clock()

        def work(conn: Connection) -> tuple[AccessToken, str]:
            assert principal.user_id is not None
            token, full = create_token(
                conn,
                pepper=services.pepper,
                user_id=principal.user_id,
                org_id=principal.org_id,
                role=values["token_role"] or principal.role,
                name=values["token_name"],
                now=now,
                lifetime=lifetime,
            )
            record(conn, actor, "token.create", now, org_id=principal.org_id, target=token.prefix, after=token.public())
            return token, full

        try:
            token, full = await dash.write(work)
        except (ClientError, AdminAuthError) as refused:
            field = field_of(refused, TOKEN_FIELDS, "token_role")
            return await page(request, found, refused.status_code, errors={field: refused.message}, values=values)
        request.session.pop(TOKEN_NONCE_FIELD, None)
        context = {**page_context(found, "account"), "token": token, "full": full, "replace_url": "/account"}
        return dash.render(request, "account_token_created.html", context)

    async def token_revoke(request: Request, found: Acting, _form: FormData) -> Response:
        principal = found.principal
        token_id = request.path_params["token_id"]
        actor = principal.actor(address(request), request_id_of(request))
        now = services.clock()

        def work(conn: Connection) -> AccessToken:
            assert principal.user_id is not None
            token = revoke_own_token(conn, principal.user_id, token_id, now)
            record(conn, actor, "token.revoke", now, org_id=principal.org_id, target=token.prefix)
            return token

        token = await dash.write(work)
        flash(request, f"Access token {token.prefix} is revoked: from now on it is refused.")
        return redirect("/account")

    return [
        Route("/account", guarded(account), methods=["GET"]),
        Route("/account/password", guarded(password), methods=["POST"]),
        Route("/account/totp", guarded(totp_setup), methods=["GET"]),
        Route("/account/totp", guarded(totp_confirm), methods=["POST"]),
        Route("/account/totp/disable", guarded(totp_disable), methods=["POST"]),
        Route("/account/tokens", guarded(token_create), methods=["POST"]),
        Route("/account/tokens/{token_id}/revoke", guarded(token_revoke), methods=["POST"]),
    ]
