"""Reading the dashboard's forms into plain values: dollars into micros, a key's policy, a top-up.

Dollars are read as text and turned into integer micros by ``glasskey.money.dollars_to_micros``
(a ``Decimal``, never a float). A form that does not parse yields field errors to show next to
the fields, not an exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import InvalidOperation
from typing import Any

from starlette.datastructures import FormData

from glasskey.errors import ClientError
from glasskey.keys.policy import DEFAULT_POLICY, KeyPolicy
from glasskey.money import MICROS_PER_DOLLAR, dollars_to_micros
from glasskey.orgs.service import WALLET_KINDS

# Bounds that catch a slip of the finger (an extra three zeros) rather than model any real limit.
AMOUNT_MAX_MICROS = 1_000_000_000 * MICROS_PER_DOLLAR
RPM_MAX = 1_000_000
NAME_MAX_LENGTH = 200
MEMO_MAX_LENGTH = 400
IDEMPOTENCY_KEY_MAX_LENGTH = 190


class FieldError(ValueError):
    """One field's value cannot be used; the message is shown next to the field."""


def parse_dollars(text: str, *, allow_zero: bool = True) -> int:
    """``"12.50"``, ``"$1,000"`` -> micros; refuses floats' habits: exponents, NaN, sub-micro digits."""
    cleaned = text.strip().replace(",", "").replace("_", "").removeprefix("$").strip()
    if not cleaned:
        raise FieldError("enter an amount in dollars, like 25 or 12.50")
    if not all(ch.isdigit() or ch == "." for ch in cleaned) or cleaned.count(".") > 1 or cleaned == ".":
        raise FieldError(f"{text.strip()!r} is not an amount in dollars (write it like 25 or 12.50)")
    try:
        micros = dollars_to_micros(cleaned)
    except (ValueError, InvalidOperation):
        raise FieldError("amounts go down to one micro-dollar ($0.000001), no further") from None
    if micros == 0 and not allow_zero:
        raise FieldError("the amount must be more than $0")
    if micros > AMOUNT_MAX_MICROS:
        raise FieldError("that amount is larger than this gateway accepts in one go")
    return micros


def parse_optional_dollars(text: str) -> int | None:
    return None if not text.strip() else parse_dollars(text)


def parse_optional_count(text: str, *, maximum: int) -> int | None:
    cleaned = text.strip().replace(",", "")
    if not cleaned:
        return None
    if not cleaned.isdigit():
        raise FieldError(f"{text.strip()!r} is not a whole number")
    value = int(cleaned)
    if value > maximum:
        raise FieldError(f"at most {maximum:,}")
    return value


def parse_expiry(text: str, now: datetime) -> datetime | None:
    """A ``datetime-local`` value (``2030-01-31T18:00``), read as UTC; it must be in the future."""
    if not text.strip():
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise FieldError("write the expiry as YYYY-MM-DD HH:MM (UTC)") from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if moment <= now:
        raise FieldError("the expiry must be in the future")
    return moment


def form_text(form: FormData, name: str) -> str:
    """A text field, stripped; an absent field (or a file) reads as empty."""
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def _checked(form: FormData, name: str) -> bool:
    return form_text(form, name) in ("on", "true", "1", "yes")


# The key form's checkboxes, each a KeyPolicy field of the same name.
POLICY_CHECKBOXES = ("lower_cost_routes", "backup_routes", "strict_params")


def policy_choices(form: FormData | None) -> dict[str, Any]:
    """The key form's settlement and checkboxes as the form shows them: as sent, or for a blank
    form the one default policy's (``DEFAULT_POLICY``), the same as the CLI's and the admin API's."""
    if form is None:
        return {"settlement": DEFAULT_POLICY.settlement, **{n: getattr(DEFAULT_POLICY, n) for n in POLICY_CHECKBOXES}}
    return {"settlement": form_text(form, "settlement"), **{n: _checked(form, n) for n in POLICY_CHECKBOXES}}


@dataclass
class KeyDraft:
    """A key as the create form describes it, before it exists."""

    org_id: str
    name: str
    owner: str
    policy: KeyPolicy | None
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors and self.policy is not None


def read_key_form(form: FormData, now: datetime) -> KeyDraft:
    errors: dict[str, str] = {}
    name = form_text(form, "name")
    if not name:
        errors["name"] = "give the key a name people will recognise, like “nightly report”"
    elif len(name) > NAME_MAX_LENGTH:
        errors["name"] = f"at most {NAME_MAX_LENGTH} characters"
    owner = form_text(form, "owner")
    if len(owner) > NAME_MAX_LENGTH:
        errors["owner"] = f"at most {NAME_MAX_LENGTH} characters"
    org_id = form_text(form, "org_id")
    if not org_id:
        errors["org_id"] = "choose the org whose wallets pay"
    allowed: tuple[str, ...] | None = None
    if form_text(form, "models_mode") != "all":
        allowed = tuple(dict.fromkeys(v.strip() for v in form.getlist("model") if isinstance(v, str) and v.strip()))
        if not allowed:
            errors["models"] = "pick at least one model, or allow every model"
    settlement = form_text(form, "settlement") or DEFAULT_POLICY.settlement
    if settlement not in ("official", "routed"):
        errors["settlement"] = "choose official Credit or routed balance"
        settlement = "routed"
    values: dict[str, int | None] = {}
    for field_name, reader in (
        ("budget_total", parse_optional_dollars),
        ("budget_daily", parse_optional_dollars),
    ):
        try:
            values[field_name] = reader(form_text(form, field_name))
        except FieldError as error:
            errors[field_name] = str(error)
    try:
        values["rpm_limit"] = parse_optional_count(form_text(form, "rpm_limit"), maximum=RPM_MAX)
    except FieldError as error:
        errors["rpm_limit"] = str(error)
    expires_at = None
    try:
        expires_at = parse_expiry(form_text(form, "expires_at"), now)
    except FieldError as error:
        errors["expires_at"] = str(error)
    policy = None
    if not errors:
        try:
            policy = KeyPolicy(
                allowed_models=allowed,
                settlement=settlement,
                # Lower-cost routes only change the order of routed routes; an official key has none.
                lower_cost_routes=settlement == "routed" and _checked(form, "lower_cost_routes"),
                backup_routes=_checked(form, "backup_routes"),
                strict_params=_checked(form, "strict_params"),
                budget_total_micros=values["budget_total"],
                budget_daily_micros=values["budget_daily"],
                rpm_limit=values["rpm_limit"],
                expires_at=expires_at,
            )
        except ClientError as error:
            errors[error.param or "form"] = error.message
    return KeyDraft(org_id=org_id, name=name, owner=owner, policy=policy, errors=errors)


@dataclass(frozen=True)
class TopUpDraft:
    org_id: str
    kind: str
    amount_micros: int
    memo: str
    idempotency_key: str | None


def read_top_up_form(form: FormData) -> TopUpDraft | dict[str, str]:
    """The top-up the form asks for, or its field errors."""
    errors: dict[str, str] = {}
    kind = form_text(form, "kind")
    if kind not in WALLET_KINDS:
        errors["kind"] = "choose the credit or the routed wallet"
    amount = 0
    try:
        amount = parse_dollars(form_text(form, "amount"), allow_zero=False)
    except FieldError as error:
        errors["amount"] = str(error)
    memo = form_text(form, "memo")
    if len(memo) > MEMO_MAX_LENGTH:
        errors["memo"] = f"at most {MEMO_MAX_LENGTH} characters"
    idempotency_key = form_text(form, "idempotency_key")[:IDEMPOTENCY_KEY_MAX_LENGTH] or None
    if errors:
        return errors
    return TopUpDraft(form_text(form, "org_id"), kind, amount, memo, idempotency_key)
