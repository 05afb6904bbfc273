"""Bad inputs are refused with a 400 that names the file, the line and the column."""

from __future__ import annotations

import pytest

from glasskey.errors import ClientError
from glasskey.research.inputs import (
    CHUNK_MAX_CHARS,
    FILE_MAX_BYTES,
    check_question,
    chunk_text,
    kind_of,
    parse_price_csv,
    read_document,
)
from glasskey.research.jobs import StoredFile
from glasskey.research.spec import JobSpec, prepare


def refused(name: str, text: str) -> ClientError:
    with pytest.raises(ClientError) as caught:
        parse_price_csv(name, text.encode())
    assert caught.value.status_code == 400 and caught.value.source == "client"
    return caught.value


GOOD = "date,symbol,close\n2020-01-01,AAA,10\n2020-02-01,AAA,11\n"


def test_a_good_csv_parses_per_symbol_in_date_order():
    parsed = parse_price_csv("p.csv", b"date,symbol,close,volume\n2020-02-01,aaa,11,5\n2020-01-01,aaa,10,4\n")
    assert [(p.day.isoformat(), p.close) for p in parsed.series["AAA"]] == [("2020-01-01", 10.0), ("2020-02-01", 11.0)]


def test_a_missing_column_is_named_with_line_one():
    error = refused("p.csv", "date,symbol\n2020-01-01,AAA\n")
    assert error.details == {"file": "p.csv", "line": 1, "column": "close"}


def test_an_unparseable_date_names_its_line_and_column():
    error = refused("p.csv", GOOD + "01/03/2020,AAA,12\n")
    assert error.details == {"file": "p.csv", "line": 4, "column": "date"}
    assert "01/03/2020" in error.message


def test_an_unparseable_price_names_its_line_and_column():
    error = refused("p.csv", GOOD + "2020-03-01,AAA,twelve\n")
    assert error.details == {"file": "p.csv", "line": 4, "column": "close"}


@pytest.mark.parametrize("price", ["0", "-3", "nan", "inf"])
def test_a_non_positive_or_non_finite_price_is_refused(price):
    error = refused("p.csv", GOOD + f"2020-03-01,AAA,{price}\n")
    assert error.details["line"] == 4 and error.details["column"] == "close"


def test_a_duplicate_date_names_both_lines():
    error = refused("p.csv", GOOD + "2020-02-01,AAA,12\n")
    assert error.details == {"file": "p.csv", "line": 4, "column": "date"}
    assert "line 3" in error.message


def test_fewer_than_two_points_is_refused():
    error = refused("p.csv", "date,symbol,close\n2020-01-01,AAA,10\n")
    assert error.details["file"] == "p.csv" and "fewer than two" in error.message


def test_an_unknown_file_type_is_refused():
    with pytest.raises(ClientError) as caught:
        kind_of("deck.pptx")
    assert caught.value.details == {"file": "deck.pptx"}


def test_a_file_over_the_limit_is_refused():
    with pytest.raises(ClientError) as caught:
        read_document("big.txt", b"x" * (FILE_MAX_BYTES + 1))
    assert "over the limit" in caught.value.message and caught.value.details == {"file": "big.txt"}


def test_too_many_documents_are_refused_before_anything_is_planned():
    files = [StoredFile(f"id{i}", f"d{i}.md", "document", "0" * 64, 5, b"hello") for i in range(11)]
    spec = JobSpec.parse({"question": "why?", "inputs": [f.id for f in files]})
    with pytest.raises(ClientError) as caught:
        prepare(spec, files)
    assert "11 documents" in caught.value.message


@pytest.mark.parametrize("question", ["", "   ", None])
def test_an_empty_question_is_refused(question):
    with pytest.raises(ClientError) as caught:
        check_question(question)
    assert caught.value.param == "question"


def test_documents_are_cut_into_bounded_chunks():
    text = "\n\n".join(["word " * 300] * 5)
    chunks = chunk_text(text)
    assert len(chunks) > 1 and all(len(c) <= CHUNK_MAX_CHARS for c in chunks)


def test_a_pdf_is_read_with_pypdf():
    import io

    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    buffer = io.BytesIO()
    writer.write(buffer)
    # A PDF with no text is refused by name: pypdf read it and found nothing to summarise.
    with pytest.raises(ClientError) as caught:
        read_document("blank.pdf", buffer.getvalue())
    assert caught.value.message == "blank.pdf has no text"
    with pytest.raises(ClientError) as broken:
        read_document("broken.pdf", b"%PDF-1.4 not really")
    assert broken.value.details == {"file": "broken.pdf"}
