"""The inputs of a research job: price series (CSV) and documents (Markdown, text, PDF).

Every refusal is a ``ClientError`` (400, ``source: client``) that names the file, and for a CSV
the line and column, so a person can fix the file without guessing. Limits are constants here
and are documented in docs/research.md.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from dataclasses import dataclass
from datetime import date
from typing import Any

from glasskey.errors import ClientError

FILE_MAX_BYTES = 2 * 1024 * 1024
DOCUMENTS_MAX = 10
PRICE_FILES_MAX = 5
INPUTS_MAX = DOCUMENTS_MAX + PRICE_FILES_MAX
QUESTION_MAX_CHARS = 2000
CHUNK_MAX_CHARS = 3000
CHUNKS_PER_DOCUMENT_MAX = 20
SYMBOLS_MAX = 20

PRICE_EXTENSIONS = (".csv",)
DOCUMENT_EXTENSIONS = (".md", ".markdown", ".txt", ".pdf")
REQUIRED_COLUMNS = ("date", "symbol", "close")
OPTIONAL_COLUMNS = ("open", "high", "low", "volume")


def input_error(
    message: str, *, file: str | None = None, line: int | None = None, column: str | None = None
) -> ClientError:
    where = {"file": file, "line": line, "column": column}
    return ClientError(
        message, code="invalid_research_input", details={k: v for k, v in where.items() if v is not None}
    )


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def kind_of(name: str) -> str:
    """``prices`` or ``document`` by the file's extension; anything else is refused."""
    lowered = name.lower()
    if lowered.endswith(PRICE_EXTENSIONS):
        return "prices"
    if lowered.endswith(DOCUMENT_EXTENSIONS):
        return "document"
    known = ", ".join(PRICE_EXTENSIONS + DOCUMENT_EXTENSIONS)
    raise input_error(f"{name}: unknown file type (known: {known})", file=name)


def check_size(name: str, data: bytes) -> None:
    if len(data) > FILE_MAX_BYTES:
        raise input_error(f"{name} is {len(data)} bytes, over the limit of {FILE_MAX_BYTES} bytes", file=name)
    if not data:
        raise input_error(f"{name} is empty", file=name)


def check_question(question: Any) -> str:
    if not isinstance(question, str) or not question.strip():
        raise ClientError("The question is empty; say what the research should answer", param="question")
    if len(question) > QUESTION_MAX_CHARS:
        raise ClientError(f"The question is longer than {QUESTION_MAX_CHARS} characters", param="question")
    return question.strip()


# --- price series -------------------------------------------------------------------------


@dataclass(frozen=True)
class PricePoint:
    day: date
    close: float


@dataclass(frozen=True)
class PriceFile:
    name: str
    series: dict[str, list[PricePoint]]  # per symbol, in date order


def parse_price_csv(name: str, data: bytes) -> PriceFile:
    """A CSV with ``date, symbol, close`` (and optionally ``open, high, low, volume``)."""
    check_size(name, data)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise input_error(f"{name} is not UTF-8 text", file=name) from exc
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        raise input_error(f"{name} has no header line", file=name, line=1)
    columns = [h.strip().lower() for h in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise input_error(
            f"{name}, line 1: missing column(s) {', '.join(missing)} (needs {', '.join(REQUIRED_COLUMNS)})",
            file=name,
            line=1,
            column=missing[0],
        )
    index = {c: columns.index(c) for c in REQUIRED_COLUMNS}
    series: dict[str, list[PricePoint]] = {}
    seen: dict[tuple[str, date], int] = {}
    for line_number, row in enumerate(reader, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) < len(columns):
            raise input_error(
                f"{name}, line {line_number}: {len(row)} fields, the header has {len(columns)}",
                file=name,
                line=line_number,
            )
        symbol = row[index["symbol"]].strip().upper()
        if not symbol:
            raise input_error(
                f"{name}, line {line_number}, column symbol: empty", file=name, line=line_number, column="symbol"
            )
        day = _parse_date(name, line_number, row[index["date"]])
        close = _parse_price(name, line_number, row[index["close"]])
        if (symbol, day) in seen:
            raise input_error(
                f"{name}, line {line_number}, column date: duplicate date {day.isoformat()} for {symbol} "
                f"(first on line {seen[(symbol, day)]})",
                file=name,
                line=line_number,
                column="date",
            )
        seen[(symbol, day)] = line_number
        series.setdefault(symbol, []).append(PricePoint(day, close))
    if not series:
        raise input_error(f"{name} has no price rows", file=name, line=2)
    if len(series) > SYMBOLS_MAX:
        raise input_error(f"{name} has {len(series)} symbols, over the limit of {SYMBOLS_MAX}", file=name)
    for symbol, points in series.items():
        if len(points) < 2:
            raise input_error(f"{name}: {symbol} has fewer than two price points", file=name, column="close")
        points.sort(key=lambda p: p.day)
    return PriceFile(name=name, series=series)


def _parse_date(name: str, line: int, raw: str) -> date:
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        raise input_error(
            f"{name}, line {line}, column date: {raw!r} is not a date (YYYY-MM-DD)", file=name, line=line, column="date"
        ) from None


def _parse_price(name: str, line: int, raw: str) -> float:
    # A statistic, not money: prices feed returns and volatilities, never a charge.
    try:
        value = float(raw.strip())
    except ValueError:
        raise input_error(
            f"{name}, line {line}, column close: {raw!r} is not a number", file=name, line=line, column="close"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise input_error(
            f"{name}, line {line}, column close: {raw!r} is not a positive price", file=name, line=line, column="close"
        )
    return value


def merge_price_files(files: list[PriceFile]) -> dict[str, list[PricePoint]]:
    """All symbols of all files; a symbol given by two files is refused (which one is right?)."""
    merged: dict[str, list[PricePoint]] = {}
    origin: dict[str, str] = {}
    for file in files:
        for symbol, points in file.series.items():
            if symbol in merged:
                raise input_error(f"{file.name}: {symbol} is also given by {origin[symbol]}", file=file.name)
            merged[symbol] = points
            origin[symbol] = file.name
    return merged


# --- documents ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Document:
    name: str
    chunks: list[str]


def read_document(name: str, data: bytes) -> Document:
    check_size(name, data)
    text = _pdf_text(name, data) if name.lower().endswith(".pdf") else _plain_text(name, data)
    if not text.strip():
        raise input_error(f"{name} has no text", file=name)
    chunks = chunk_text(text)
    if len(chunks) > CHUNKS_PER_DOCUMENT_MAX:
        raise input_error(
            f"{name} makes {len(chunks)} chunks of {CHUNK_MAX_CHARS} characters, over the limit of "
            f"{CHUNKS_PER_DOCUMENT_MAX}",
            file=name,
        )
    return Document(name=name, chunks=chunks)


def _plain_text(name: str, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise input_error(f"{name} is not UTF-8 text", file=name) from exc


def _pdf_text(name: str, data: bytes) -> str:
    from pypdf import PdfReader  # imported here: only PDF inputs pay for loading it
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        return "\n\n".join(page.extract_text() or "" for page in reader.pages)
    except (PdfReadError, ValueError, KeyError) as exc:
        raise input_error(f"{name} is not a readable PDF ({exc})", file=name) from None


def chunk_text(text: str) -> list[str]:
    """Paragraphs packed into chunks of at most ``CHUNK_MAX_CHARS``; a longer paragraph is cut."""
    chunks: list[str] = []
    current = ""
    for paragraph in (p.strip() for p in text.replace("\r\n", "\n").split("\n\n")):
        if not paragraph:
            continue
        while len(paragraph) > CHUNK_MAX_CHARS:
            if current:
                chunks.append(current)
                current = ""
            chunks.append(paragraph[:CHUNK_MAX_CHARS])
            paragraph = paragraph[CHUNK_MAX_CHARS:]
        if current and len(current) + 2 + len(paragraph) > CHUNK_MAX_CHARS:
            chunks.append(current)
            current = ""
        current = f"{current}\n\n{paragraph}" if current else paragraph
    if current:
        chunks.append(current)
    return chunks
