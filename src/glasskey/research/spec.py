"""A research job's spec (question, inputs, models, depth, window, risk-free rate) and its preparation.

``JobSpec.parse`` validates the JSON a person sends; ``prepare`` reads every input, computes
the figures and plans the calls, all locally and without money: every refusal here is a 400
naming what is wrong. The preflight and the runner both start from a ``Prepared`` job, so the
calls the preflight quotes are the calls the runner sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from glasskey.errors import ClientError
from glasskey.research.inputs import (
    DOCUMENTS_MAX,
    INPUTS_MAX,
    PRICE_FILES_MAX,
    Document,
    PriceFile,
    PricePoint,
    check_question,
    input_error,
    merge_price_files,
    parse_price_csv,
    read_document,
)
from glasskey.research.jobs import StoredFile
from glasskey.research.metrics import MetricsTable, compute_metrics, table_text
from glasskey.research.plan import DEPTH_PASSES, Plan, make_plan

DEFAULT_QUICK_MODEL = "gpt-4o-mini"
DEFAULT_DEEP_MODEL = "claude-sonnet-4-5"
# The fields ``JobSpec.parse`` reads (a multipart job is refused any other).
JOB_FIELDS = ("question", "inputs", "depth", "quick_model", "deep_model", "start", "end", "risk_free_rate")


@dataclass(frozen=True)
class JobSpec:
    question: str
    file_ids: list[str]
    quick_model: str
    deep_model: str
    depth: str
    risk_free_rate: str  # a decimal fraction as text, e.g. "0.02"
    window_start: str | None = None  # ISO dates, inclusive; None takes every aligned date
    window_end: str | None = None

    @classmethod
    def parse(cls, body: dict[str, Any]) -> JobSpec:
        question = check_question(body.get("question"))
        inputs = body.get("inputs", [])
        if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            raise ClientError("`inputs` must be an array of file ids from POST /v1/research/files", param="inputs")
        if len(inputs) > INPUTS_MAX:
            raise input_error(f"{len(inputs)} inputs, over the limit of {INPUTS_MAX}")
        depth = body.get("depth", "standard")
        if depth not in DEPTH_PASSES:
            raise ClientError(f"`depth` must be one of {', '.join(DEPTH_PASSES)}", param="depth")
        models = {}
        for field, default in (("quick_model", DEFAULT_QUICK_MODEL), ("deep_model", DEFAULT_DEEP_MODEL)):
            value = body.get(field) or default
            if not isinstance(value, str) or len(value) > 200:
                raise ClientError(f"`{field}` must be a model name", param=field)
            models[field] = value
        rate_text = str(body.get("risk_free_rate", "0"))
        try:
            rate = Decimal(rate_text)
        except InvalidOperation:
            raise ClientError(
                "`risk_free_rate` must be a decimal fraction, e.g. 0.02", param="risk_free_rate"
            ) from None
        if not rate.is_finite() or not Decimal("-0.5") <= rate <= Decimal("1"):
            raise ClientError("`risk_free_rate` must be between -0.5 and 1 (a fraction a year)", param="risk_free_rate")
        window = [_iso_date(body.get(field), field) for field in ("start", "end")]
        if window[0] and window[1] and window[0] > window[1]:
            raise ClientError("`start` is after `end`", param="start")
        return cls(
            question, list(inputs), models["quick_model"], models["deep_model"], depth, rate_text, window[0], window[1]
        )


def _iso_date(value: Any, field: str) -> str | None:
    if value is None or value == "":
        return None
    try:
        return date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise ClientError(f"`{field}` must be a date, YYYY-MM-DD", param=field) from None


@dataclass(frozen=True)
class Prepared:
    spec: JobSpec
    files: list[StoredFile]
    documents: list[Document]
    table: MetricsTable | None
    figures: str  # the table as the deep model reads it
    plan: Plan


def prepare(spec: JobSpec, files: list[StoredFile]) -> Prepared:
    """Parse every input, compute the figures, and plan the calls (all local, all refusals 400)."""
    prices = [f for f in files if f.kind == "prices"]
    docs = [f for f in files if f.kind == "document"]
    if len(docs) > DOCUMENTS_MAX:
        raise input_error(f"{len(docs)} documents, over the limit of {DOCUMENTS_MAX}")
    if len(prices) > PRICE_FILES_MAX:
        raise input_error(f"{len(prices)} price files, over the limit of {PRICE_FILES_MAX}")
    if not files:
        raise input_error("a job needs at least one price file or document")
    documents = [read_document(f.name, f.content) for f in docs]
    table = None
    if prices:
        parsed = [parse_price_csv(f.name, f.content) for f in prices]
        series = within_window(merge_price_files(parsed), spec.window_start, spec.window_end, sources_of(parsed))
        sources = sources_of(parsed)
        table = compute_metrics(series, risk_free_rate=float(Decimal(spec.risk_free_rate)), sources=sources)
    figures = table_text(table) if table is not None else "(no price data was given)"
    plan = make_plan(
        question=spec.question,
        documents=documents,
        table=figures,
        quick_model=spec.quick_model,
        deep_model=spec.deep_model,
        depth=spec.depth,
    )
    return Prepared(spec, files, documents, table, figures, plan)


def sources_of(parsed: list[PriceFile]) -> dict[str, str]:
    return {symbol: p.name for p in parsed for symbol in p.series}


def within_window(
    series: dict[str, list[PricePoint]], start: str | None, end: str | None, sources: dict[str, str]
) -> dict[str, list[PricePoint]]:
    """Each symbol's points inside the window; a symbol left with fewer than two is refused."""
    low = date.fromisoformat(start) if start else date.min
    high = date.fromisoformat(end) if end else date.max
    kept = {symbol: [p for p in points if low <= p.day <= high] for symbol, points in series.items()}
    for symbol, points in kept.items():
        if len(points) < 2:
            raise input_error(
                f"{sources[symbol]}: {symbol} has fewer than two price points from {start or 'the start'} "
                f"to {end or 'the end'}",
                file=sources[symbol],
                column="date",
            )
    return kept
