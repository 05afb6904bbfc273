"""The simulated provider's answers to the research assistant's steps, of the shape each asks for.

A research request names its step with a marker in its system message (``research.plan``
writes them). The map step gets JSON claims drawn from the chunk's own sentences; the analysis
step gets Markdown that compares the symbols of the figures table in words (it restates no
number) and cites the claims it was given. Answers depend only on the request, so a run replays
exactly. Any other request gets ``None`` and the provider's usual prose.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

MAP_MARKER = "[glasskey research: map]"
ANALYSIS_MARKER = "[glasskey research: analysis]"
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_CITED = re.compile(r"^(\[doc: [^\]]+\]) (?!summary:)(.+)$", re.MULTILINE)
_ROW = re.compile(r"^\| ([A-Z0-9.\-]+) \| (-?[\d.]+)% \| (-?[\d.]+)% \| (-?[\d.]+)% \| (-?[\d.]+)% \|", re.MULTILINE)


def research_answer(messages: list[dict[str, Any]], cap: int | None, count: Callable[[str], int]) -> str | None:
    system = next((m.get("content") for m in messages if m.get("role") == "system"), None)
    user = next((m.get("content") for m in messages if m.get("role") == "user"), None)
    if not isinstance(system, str) or not isinstance(user, str):
        return None
    if system.startswith(MAP_MARKER):
        return _claims(user, cap, count)
    if system.startswith(ANALYSIS_MARKER):
        return _analysis(user)
    return None


def _claims(user: str, cap: int | None, count: Callable[[str], int]) -> str:
    chunk = user.split("\n\n", 1)[1] if "\n\n" in user else user
    chunk = "\n".join(line for line in chunk.splitlines() if not line.lstrip().startswith("#"))
    sentences = [s.strip().replace("\n", " ") for s in _SENTENCE.split(chunk) if len(s.strip()) > 20]
    # Sentences with figures or named causes make the most useful claims; keep the text's order.
    ranked = sorted(sentences, key=lambda s: (-sum(c.isdigit() for c in s), sentences.index(s)))[:3]
    claims = [{"text": s[:240], "quote": " ".join(s.split()[:12])} for s in sentences if s in ranked]
    summary = " ".join(sentences[:2])[:300] or "The chunk has no full sentences."
    while True:
        text = json.dumps({"summary": summary, "claims": claims}, ensure_ascii=False)
        if cap is None or count(text) <= cap or not claims:
            return text
        claims.pop()


def _analysis(user: str) -> str:
    rows = [(m[1], float(m[3]), float(m[4]), float(m[5])) for m in _ROW.finditer(user)]
    cited = _CITED.findall(user)
    out = ["## What the figures show", ""]
    if len(rows) >= 2:
        best = max(rows, key=lambda r: r[1])
        calm = min(rows, key=lambda r: r[2])
        shallow = max(rows, key=lambda r: r[3])
        out.append(
            f"{best[0]} had the highest annualised return of the symbols in the figures table; "
            f"{calm[0]} had the lowest annualised volatility, and {shallow[0]} the shallowest maximum drawdown."
        )
        out.append("The table's Sharpe ratios and correlations show how much of the return came with its risk.")
    elif rows:
        out.append(f"{rows[0][0]} is the only symbol; the figures table gives its return, risk and drawdown.")
    else:
        out.append("No price data was given, so there are no figures to compare.")
    out += ["", "## What the documents say", ""]
    if cited:
        out += [f"- {text} {tag}" for tag, text in cited[:8]]
    else:
        out.append("No document evidence was given; this analysis rests on the figures alone.")
    out += ["", "## Caveats", "", "Past returns do not predict future ones; the window and the sources limit it."]
    return "\n".join(out)
