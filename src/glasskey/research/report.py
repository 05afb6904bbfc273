"""The research report, as JSON and Markdown, with the notice at the top and the bottom.

Every figure is rendered from the computed ``MetricsTable``; the deep model's analysis is quoted
as model text, and any number in it that the table does not contain is listed as flagged, never
shown as a finding. Citations of document claims are attached from the chunk each claim came
from. The receipts table lists the gateway's receipt of every call the job sent; its total is
the sum of those receipts' charges, which the ledger audit ties to the posted charges.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from glasskey.money import format_usd
from glasskey.research import NOTICE
from glasskey.research.answers import citation
from glasskey.research.chart import normalised_svg
from glasskey.research.metrics import MetricsTable, table_text

_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?%?")
_CITATION = re.compile(r"\[doc: [^\]]*\]")


def flagged_numbers(analysis: str, figures: str) -> list[str]:
    """Numbers the model wrote (with a decimal point or a percent sign) that the table does not hold."""
    known = set(_NUMBER.findall(figures))
    found = _NUMBER.findall(_CITATION.sub("", analysis))
    flagged = [n for n in found if ("." in n or n.endswith("%")) and n not in known]
    return list(dict.fromkeys(flagged))


def render_report(
    *,
    job: Any,
    table: MetricsTable | None,
    claims: list[dict[str, Any]],
    analysis: str | None,
    receipts: list[dict[str, Any]],
    status: str,
    note: str,
    risk_free_rate: Decimal,
) -> dict[str, Any]:
    figures = table_text(table) if table is not None else ""
    flagged = flagged_numbers(analysis or "", figures)
    total = sum(r["charge_micros"] for r in receipts)
    evidence = [
        {"citation": citation(c["document"], c["chunk"]), "text": claim["text"], "quote": claim["quote"]}
        for c in claims
        for claim in c["claims"]
    ]
    report: dict[str, Any] = {
        "object": "research.report",
        "notice": NOTICE,
        "job_id": job.id,
        "status": status,
        "note": note,
        "question": job.question,
        "models": {"quick": job.quick_model, "deep": job.deep_model},
        "depth": job.depth,
        "risk_free_rate": str(risk_free_rate),
        "figures": table.as_dict() if table is not None else None,
        "summaries": [{"citation": citation(c["document"], c["chunk"]), "summary": c["summary"]} for c in claims],
        "evidence": evidence,
        "analysis": {"model": job.deep_model, "text": analysis, "flagged_numbers": flagged},
        "receipts": receipts,
        "total_charge_micros": total,
        "confirmed_max_micros": job.confirmed_max_micros,
        "reproducibility": {"seed": job.plan["calls"][0]["body"].get("seed") if job.plan["calls"] else None},
        "notice_end": NOTICE,
    }
    report["chart_svg"] = normalised_svg(table) if table is not None else None
    report["markdown"] = _markdown(job, table, figures, evidence, analysis, flagged, receipts, total, status, note)
    return report


def _markdown(
    job: Any,
    table: MetricsTable | None,
    figures: str,
    evidence: list[dict[str, Any]],
    analysis: str | None,
    flagged: list[str],
    receipts: list[dict[str, Any]],
    total: int,
    status: str,
    note: str,
) -> str:
    out = [f"> **{NOTICE}**", "", f"# Research report: {job.question}", ""]
    out.append(
        f"Job `{job.id}` · status **{status}** · quick model `{job.quick_model}` · deep model `{job.deep_model}` · "
        f"depth {job.depth}"
    )
    if note:
        out += ["", f"**Note:** {note}"]
    out += ["", "## Figures (computed by glasskey from the price data)", ""]
    if table is None:
        out.append("No price data was given, so there are no figures.")
    else:
        out += [figures, "", "Every figure above is computed from the named price files; none comes from a model."]
        out += ["", "## Normalised prices (first aligned date = 100)", "", normalised_svg(table)]
    out += ["", "## Evidence from the documents", ""]
    if evidence:
        out += [f"- {e['citation']} {e['text']}" + (f' — "{e["quote"]}"' if e["quote"] else "") for e in evidence]
    else:
        out.append("No claims were extracted from documents: the report has no evidence beyond the price data.")
    out += ["", f"## Analysis (model text, written by `{job.deep_model}`)", ""]
    if analysis is None:
        out.append("The analysis step did not run.")
    else:
        out += [f"> {line}" if line else ">" for line in analysis.splitlines()]
        if flagged:
            out += [
                "",
                "**Flagged:** the analysis states numbers that are not in the computed figures and are not findings: "
                + ", ".join(f"`{n}`" for n in flagged),
            ]
    out += ["", "## Receipts", ""]
    out.append("| request id | step | model | route | settlement | tokens in/out | charge | latency | status |")
    out.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in receipts:
        out.append(
            f"| `{r['request_id']}` | {r['step']} | {r['requested_model']} | {r['route_id'] or '-'} | "
            f"{r['settlement'] or '-'} | {r['input_tokens']}/{r['output_tokens']} | {format_usd(r['charge_micros'])} | "
            f"{r['latency_ms']} ms | {r['status']} |"
        )
    out.append(f"| **total** | | | | | | **{format_usd(total)}** ({total} micros) | | |")
    out += ["", "The workflow itself is free; each model call above was charged like any request.", ""]
    out += [f"> **{NOTICE}**", ""]
    return "\n".join(out)
