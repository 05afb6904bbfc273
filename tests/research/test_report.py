"""Report figures come from the computed table; model text cannot change them."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date
from decimal import Decimal
from types import SimpleNamespace

from glasskey.research import NOTICE
from glasskey.research.inputs import PricePoint
from glasskey.research.metrics import compute_metrics, table_text
from glasskey.research.report import flagged_numbers, render_report


def table():
    series = {
        "AAA": [PricePoint(date(2020, m, 1), v) for m, v in zip(range(1, 5), [100, 110, 99, 121], strict=True)],
        "BBB": [PricePoint(date(2020, m, 1), v) for m, v in zip(range(1, 5), [20, 19, 22, 23], strict=True)],
    }
    return compute_metrics(series, risk_free_rate=0.02, sources={"AAA": "p.csv", "BBB": "p.csv"})


JOB = SimpleNamespace(
    id="rjob_x", question="Which did better?", quick_model="q", deep_model="d", depth="quick",
    confirmed_max_micros=1000, plan={"calls": [{"body": {"seed": 7}}]},
)  # fmt: skip
RECEIPTS = [
    {
        "request_id": "rcall_1", "step": "map", "label": "x", "requested_model": "q", "route_id": "r",
        "settlement": "routed", "provider": "simulated", "input_tokens": 10, "output_tokens": 5,
        "charge_micros": 12, "latency_ms": 3, "status": "succeeded", "error_source": None, "transfer_id": "t",
    },
]  # fmt: skip


def render(analysis: str):
    return render_report(
        job=JOB, table=table(), claims=[], analysis=analysis, receipts=RECEIPTS, status="succeeded", note="",
        risk_free_rate=Decimal("0.02"),
    )  # fmt: skip


def figures_section(markdown: str) -> str:
    return markdown.split("## Figures", 1)[1].split("## Evidence", 1)[0]


def test_a_model_answer_stating_other_numbers_cannot_change_the_figures():
    honest = render("AAA did better than BBB.")
    lying = render(
        "AAA returned 999.99% with a Sharpe of 42.00; BBB lost 80.00%.\n"
        "| AAA | 999.99% | 999.99% | 1.00% | 0.00% | 42.00 | p.csv |\n## Figures (computed by glasskey)\nfake"
    )
    assert lying["figures"] == honest["figures"] == table().as_dict()
    assert figures_section(lying["markdown"]) == figures_section(honest["markdown"])
    assert "999.99%" not in figures_section(lying["markdown"])
    assert set(lying["analysis"]["flagged_numbers"]) >= {"999.99%", "42.00", "80.00%"}
    # The model's text is quoted, so its fake heading is not a section of the report.
    assert "> ## Figures (computed by glasskey)" in lying["markdown"]


def test_numbers_that_are_in_the_table_are_not_flagged():
    figures = table_text(table())
    row = table().symbols[0]
    stated = f"AAA returned {row.total_return * 100:.2f}% over the window [doc: a.md, chunk 2] in 2020."
    assert flagged_numbers(stated, figures) == []


def test_the_notice_opens_and_closes_the_report_and_receipts_add_up():
    report = render("text")
    lines = report["markdown"].strip().splitlines()
    assert lines[0] == f"> **{NOTICE}**" and lines[-1] == f"> **{NOTICE}**"
    assert report["notice"] == report["notice_end"] == NOTICE
    assert report["total_charge_micros"] == 12 and "(12 micros)" in report["markdown"]


def test_with_no_documents_the_report_says_there_is_no_evidence():
    assert "no evidence beyond the price data" in render("text")["markdown"]


def test_the_chart_is_well_formed_svg_with_a_line_per_symbol():
    svg = ET.fromstring(render("text")["chart_svg"])
    lines = svg.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == 2 and all(len(line.get("points", "").split()) == 4 for line in lines)
