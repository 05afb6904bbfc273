"""The dashboard's helpers, without a server: forms, sign-in and CSRF, figures, charts and queries."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection
from starlette.datastructures import FormData

from conftest_helpers import NOW, make_settings
from glasskey.dashboard import filters
from glasskey.dashboard.auth import check_csrf, csrf_token, safe_next, session_secret, start_session
from glasskey.dashboard.charts import OTHER_COLOUR, SERIES_MAX, nice_ceiling, stacked_bars
from glasskey.dashboard.forms import FieldError, parse_dollars, parse_expiry, read_key_form, read_top_up_form
from glasskey.dashboard.pages.keys import draft_pairs, key_state
from glasskey.dashboard.pages.receipts import csv_line, timeline
from glasskey.dashboard.pages.wallets import ledger_line
from glasskey.dashboard.queries import (
    ReceiptFilter,
    failures_grouped,
    receipt_totals,
    recent_route_errors,
    search_receipts,
    spend_by_day,
    spend_windows,
)
from glasskey.dashboard.refusals import CsrfRefused
from glasskey.keys.policy import KeyPolicy
from glasskey.keys.service import create_key, revoke_key
from glasskey.ledger import Transfer
from glasskey.orgs.service import create_org
from glasskey.receipts.records import Attempt, Receipt, write_receipt
from glasskey.store.database import Database

# Forms: dollars are text turned into integer micros, never a float.


@pytest.mark.parametrize(
    ("text", "micros"),
    [("25", 25_000_000), ("12.50", 12_500_000), ("$1,000", 1_000_000_000), ("0.000001", 1), (" 0.1 ", 100_000)],
)
def test_dollars_are_read_as_text_into_exact_micros(text: str, micros: int) -> None:
    assert parse_dollars(text) == micros


@pytest.mark.parametrize("text", ["", "1e3", "nan", "inf", "-5", "0.0000001", "1.2.3", "twelve", ".", "1_0e2"])
def test_what_is_not_an_amount_of_dollars_is_refused_with_a_reason(text: str) -> None:
    with pytest.raises(FieldError):
        parse_dollars(text)


def test_a_top_up_of_nothing_is_refused() -> None:
    with pytest.raises(FieldError, match="more than"):
        parse_dollars("0.00", allow_zero=False)


def test_an_expiry_is_read_as_utc_and_must_be_in_the_future() -> None:
    assert parse_expiry("2030-01-31T18:00", NOW) == datetime(2030, 1, 31, 18, 0, tzinfo=UTC)
    assert parse_expiry("", NOW) is None
    with pytest.raises(FieldError, match="future"):
        parse_expiry("2020-01-01T00:00", NOW)
    with pytest.raises(FieldError):
        parse_expiry("next tuesday", NOW)


def key_form(**fields: Any) -> FormData:
    values = {"org_id": "org_1", "name": "nightly", "models_mode": "some", "settlement": "routed", **fields}
    pairs = [(k, v) for k, value in values.items() for v in (value if isinstance(value, list) else [value])]
    return FormData(pairs)


def test_the_key_form_becomes_a_policy_with_budgets_in_micros() -> None:
    form = key_form(
        model=["gpt-4o-mini", "gpt-4o-mini", "gemini-2.5-flash"],
        lower_cost_routes="on",
        backup_routes="on",
        strict_params="on",
        budget_total="5",
        budget_daily="0.25",
        rpm_limit="60",
        expires_at="2030-01-01T00:00",
    )
    draft = read_key_form(form, NOW)
    assert draft.ok, draft.errors
    assert draft.policy == KeyPolicy(
        allowed_models=("gpt-4o-mini", "gemini-2.5-flash"),
        settlement="routed",
        lower_cost_routes=True,
        backup_routes=True,
        strict_params=True,
        budget_total_micros=5_000_000,
        budget_daily_micros=250_000,
        rpm_limit=60,
        expires_at=datetime(2030, 1, 1, tzinfo=UTC),
    )


def test_an_official_key_never_turns_lower_cost_routes_on_and_may_allow_every_model() -> None:
    draft = read_key_form(key_form(models_mode="all", settlement="official", lower_cost_routes="on"), NOW)
    assert draft.policy == KeyPolicy(allowed_models=None, settlement="official", lower_cost_routes=False)


def test_the_key_form_names_every_field_it_cannot_use() -> None:
    draft = read_key_form(key_form(name="", budget_total="1e3", rpm_limit="fast", settlement="cheap"), NOW)
    assert not draft.ok and draft.policy is None
    assert set(draft.errors) == {"name", "models", "budget_total", "rpm_limit", "settlement"}


def test_the_preview_carries_only_the_drafts_fields_to_the_next_step() -> None:
    form = key_form(model=["a", "b"], csrf_token="t", step="preview", nonce="n")
    assert ("model", "a") in draft_pairs(form) and ("model", "b") in draft_pairs(form)
    assert not {"csrf_token", "step", "nonce"} & {name for name, _ in draft_pairs(form)}


def test_the_top_up_form_reads_its_amount_or_says_what_is_wrong() -> None:
    draft = read_top_up_form(FormData({"org_id": "o", "kind": "routed", "amount": "12.34", "idempotency_key": "k"}))
    assert not isinstance(draft, dict)
    assert (draft.kind, draft.amount_micros, draft.idempotency_key) == ("routed", 12_340_000, "k")
    errors = read_top_up_form(FormData({"kind": "gold", "amount": "0.5e1"}))
    assert isinstance(errors, dict) and set(errors) == {"kind", "amount"}


# Sign-in and CSRF.


def test_the_session_secret_is_derived_from_the_admin_token_and_never_is_it(tmp_path) -> None:
    settings = make_settings(tmp_path)
    secret = session_secret(settings)
    assert secret == session_secret(make_settings(tmp_path))
    assert settings.admin_token.get_secret_value() not in secret
    assert secret != session_secret(make_settings(tmp_path, admin_token="another-admin-token-0123456789abcdef"))
    assert secret != session_secret(make_settings(tmp_path, key_pepper="another-pepper-0123456789abcdef"))


def test_a_form_needs_the_sessions_own_csrf_token() -> None:
    session: dict[str, Any] = {}
    token = csrf_token(session)
    assert csrf_token(session) == token  # one per session
    check_csrf(session, token)
    for sent in (None, "", token + "x"):
        with pytest.raises(CsrfRefused):
            check_csrf(session, sent)
    with pytest.raises(CsrfRefused):
        check_csrf({}, token)  # a session without a token accepts no form


def test_signing_in_starts_a_fresh_session_with_a_new_csrf_token() -> None:
    session: dict[str, Any] = {"flash": ["old"]}
    before = csrf_token(session)
    start_session(session)
    assert session["signed_in"] is True and "flash" not in session
    assert csrf_token(session) != before


@pytest.mark.parametrize(
    ("target", "safe"),
    [("/keys?x=1", "/keys?x=1"), ("//evil.example", "/"), ("https://evil.example", "/"), ("/\\evil", "/"), (None, "/")],
)
def test_after_sign_in_the_dashboard_only_sends_people_to_its_own_pages(target: str | None, safe: str) -> None:
    assert safe_next(target) == safe


# Figures for people.


def test_money_is_shown_exactly_and_keeps_its_micros() -> None:
    assert str(filters.money(1_500_000)) == '<span class="money" data-micros="1500000">$1.50</span>'
    assert str(filters.money(16)) == '<span class="money" data-micros="16">$0.000016</span>'
    assert filters.share_of(90_000, 150_000) == "60%"
    assert filters.rate(0.975) == "97.5%" and filters.rate(1.0) == "100%" and filters.rate(None) == "-"


def test_explanation_words_escape_html_and_render_code_spans() -> None:
    assert str(filters.words("use `gk-1` <b>")) == "use <code>gk-1</code> &lt;b&gt;"


# Charts.


def test_a_chart_scale_is_a_round_number_at_or_above_the_largest_day() -> None:
    assert [nice_ceiling(n) for n in (0, 1, 3, 10, 11, 4_000, 60_001)] == [1, 1, 5, 10, 20, 5_000, 100_000]


def test_stacked_bars_stack_each_day_and_sum_small_series_into_others() -> None:
    days = ["2026-11-26", "2026-11-27"]
    series = {f"m{i}": {"2026-11-27": 100 * (i + 1)} for i in range(SERIES_MAX + 2)}
    series["m0"]["2026-11-26"] = 50
    chart = stacked_bars(days, series)
    assert chart.total_micros == sum(sum(v.values()) for v in series.values())
    assert len(chart.legend) == SERIES_MAX and chart.legend[-1].colour == OTHER_COLOUR
    assert chart.legend[-1].label == "3 others"
    last_day = [s for s in chart.segments if s.title.startswith("2026-11-27")]
    # The bars of one day sit on each other: each starts where the one below ended.
    for below, above in itertools.pairwise(last_day):
        assert above.y + above.height == pytest.approx(below.y)
    assert stacked_bars(days, {}).empty


# Page helpers.


def test_a_key_is_active_revoked_or_expired(sqlite_db: Database) -> None:
    with sqlite_db.write() as conn:
        org = create_org(conn, "acme", NOW)
        key, _ = create_key(conn, pepper="p" * 16, org_id=org.id, name="k", policy=KeyPolicy(), now=NOW)
        soon, _ = create_key(
            conn,
            pepper="p" * 16,
            org_id=org.id,
            name="k",
            policy=KeyPolicy(expires_at=NOW + timedelta(hours=1)),
            now=NOW,
        )
        assert key_state(key, NOW) == "active"
        assert key_state(soon, NOW + timedelta(hours=2)) == "expired"
        assert key_state(revoke_key(conn, key.id, NOW), NOW) == "revoked"


def transfer(**fields: Any) -> Transfer:
    values: dict[str, Any] = {
        "id": "tr_1",
        "debit_account_id": "wallet",
        "credit_account_id": "revenue",
        "amount_micros": 500,
        "posted_amount_micros": None,
        "status": "pending",
        "kind": "charge",
        "request_id": "req_1",
        "key_id": None,
        "budget_period": None,
        "idempotency_key": None,
        "memo": "",
        "created_at": NOW,
        "expires_at": None,
        "resolved_at": None,
    }
    return Transfer(**{**values, **fields})


def test_a_ledger_line_shows_what_actually_moved() -> None:
    assert ledger_line(transfer(), "wallet")["moved_micros"] == 500  # a hold
    assert ledger_line(transfer(status="posted", posted_amount_micros=120), "wallet")["moved_micros"] == 120
    assert ledger_line(transfer(status="voided"), "wallet")["moved_micros"] == 0
    top_up = ledger_line(transfer(debit_account_id="source", credit_account_id="wallet", kind="topup"), "wallet")
    assert top_up["direction"] == "in"


def test_attempts_line_up_one_after_another_on_the_receipts_timeline() -> None:
    bars = timeline([{"latency_ms": 300}, {"latency_ms": 100}], 400)
    assert [(b["start_ms"], b["offset_pct"], b["width_pct"]) for b in bars] == [(0, 0, 75), (300, 75, 25)]
    assert timeline([{"latency_ms": 0}], 0)[0]["width_pct"] == 0.5  # still visible


def test_csv_cells_that_a_spreadsheet_would_run_are_defused() -> None:
    row = receipt(created_at=NOW, error_message="=HYPERLINK(1)", flags=["charge_capped_at_hold"])
    line = csv_line({**row.row(), "key": None})
    assert line["error_message"] == "'=HYPERLINK(1)"
    assert line["charge_usd"] == "0.000120" and line["attempt_count"] == 1
    assert line["flags"] == "charge_capped_at_hold"


# Queries over receipts, on SQLite and PostgreSQL.

_SEQ = iter(range(1, 1_000_000))


def receipt(**fields: Any) -> Receipt:
    values: dict[str, Any] = {
        "request_id": f"req_{next(_SEQ)}",
        "endpoint": "chat.completions",
        "created_at": NOW,
        "status": "succeeded",
        "http_status": 200,
        "key_id": "key_a",
        "org_id": "org_1",
        "requested_model": "gpt-4o-mini",
        "settlement": "routed",
        "route_id": "rt-a",
        "charge_micros": 120,
        "input_tokens": 10,
        "output_tokens": 20,
        "attempts": [Attempt("rt-a", "simulated", "gpt-4o-mini", "succeeded", 5)],
    }
    return Receipt(**{**values, **fields})


def failed(source: str, route_id: str | None, **fields: Any) -> Receipt:
    attempts = [Attempt(route_id, "simulated", "m", "failed", 9, 500, "server_error", "boom")] if route_id else []
    return receipt(
        status="failed",
        http_status=502,
        error_source=source,
        error_message=f"{source} failed",
        route_id=route_id,
        charge_micros=0,
        attempts=attempts,
        **fields,
    )


@pytest.fixture
def written(db: Database) -> Database:
    rows = [
        receipt(),
        receipt(created_at=NOW - timedelta(hours=13), requested_model="claude-sonnet-4-5", charge_micros=1_000),
        receipt(created_at=NOW - timedelta(days=3), key_id="key_b", settlement="official", charge_micros=2_000),
        receipt(created_at=NOW - timedelta(days=20), charge_micros=30_000),
        receipt(created_at=NOW - timedelta(days=40), charge_micros=400_000),
        failed("upstream", "rt-a"),
        failed("upstream", "rt-b", created_at=NOW - timedelta(days=2)),
        failed("model", None),
    ]
    with db.write() as conn:
        for row in rows:
            write_receipt(conn, row)
    return db


def read(db: Database, work: Any) -> Any:
    with db.read() as conn:
        return work(conn)


def test_totals_follow_every_filter(written: Database) -> None:
    def totals(**where: Any) -> tuple[int, int, int]:
        found = read(written, lambda conn: receipt_totals(conn, ReceiptFilter(**where)))
        return found.requests, found.failed, found.charge_micros

    assert totals() == (8, 3, 433_120)
    assert totals(settlement="official") == (1, 0, 2_000)
    assert totals(key_id="key_b") == (1, 0, 2_000)
    assert totals(status="failed", error_source="upstream") == (2, 2, 0)
    assert totals(model="claude-sonnet-4-5") == (1, 0, 1_000)
    assert totals(since=NOW - timedelta(days=7), until=NOW - timedelta(days=1)) == (2, 1, 2_000)


def test_spend_windows_count_today_as_the_utc_day(written: Database) -> None:
    windows = read(written, lambda conn: spend_windows(conn, NOW))
    assert [(w.totals.requests, w.totals.failed, w.totals.charge_micros) for w in windows] == [
        (3, 2, 120),  # since midnight UTC: 13 hours ago was yesterday
        (6, 3, 3_120),
        (7, 3, 33_120),
    ]


def test_spend_by_day_groups_charges_by_model_and_by_key(written: Database) -> None:
    by_model = read(written, lambda conn: spend_by_day(conn, NOW, days=30, by="model"))
    assert by_model == {
        "gpt-4o-mini": {"2026-11-27": 120, "2026-11-24": 2_000, "2026-11-07": 30_000},
        "claude-sonnet-4-5": {"2026-11-26": 1_000},
    }
    by_key = read(written, lambda conn: spend_by_day(conn, NOW, days=7, by="key"))
    assert by_key == {"key_a": {"2026-11-27": 120, "2026-11-26": 1_000}, "key_b": {"2026-11-24": 2_000}}


def test_failures_are_grouped_by_source_and_by_route(written: Database) -> None:
    by_source = read(written, lambda conn: failures_grouped(conn, None, by="source"))
    assert [(g.name, g.count) for g in by_source] == [("upstream", 2), ("model", 1)]
    assert by_source[0].latest["route_id"] == "rt-b"  # the last written of the group
    by_route = read(written, lambda conn: failures_grouped(conn, NOW - timedelta(days=1), by="route"))
    assert [(g.name, g.count, g.by_source) for g in by_route] == [(None, 1, {"model": 1}), ("rt-a", 1, {"upstream": 1})]


def test_search_pages_newest_first_and_route_errors_come_from_attempts(written: Database) -> None:
    def search(conn: Connection) -> list[list[str]]:
        pages, before = [], None
        while True:
            page = search_receipts(conn, ReceiptFilter(), before=before, limit=3)
            pages.append([row["request_id"] for row in page.rows])
            if page.next_before is None:
                return pages
            before = page.next_before

    pages = read(written, search)
    assert [len(p) for p in pages] == [3, 3, 2]
    assert len({rid for p in pages for rid in p}) == 8
    errors = read(written, recent_route_errors)
    assert set(errors) == {"rt-a", "rt-b"}
    assert errors["rt-a"][0]["error_message"] == "boom"
