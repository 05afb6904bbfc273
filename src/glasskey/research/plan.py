"""The plan of a research job: its steps, and every model call with the exact body it will send.

The bodies are built in code from the inputs, so the preflight quotes the very requests the
run sends. The analysis call's body holds the claims the map step extracts, which are unknown
before the run: the plan reserves a fixed byte budget for them (filled with a placeholder of
that size), and the runner never puts more than that budget in, so the quoted maximum of the
analysis call bounds the real one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from glasskey.research.inputs import Document

DEPTH_PASSES = {"quick": 1, "standard": 2, "thorough": 3}
# What each quick-model pass over a chunk looks for; pass n uses the first n lenses.
PASS_FOCUS = ("facts and claims that bear on the question", "risks and uncertainties", "drivers of return")
MAP_MAX_TOKENS = 600
ANALYSIS_MAX_TOKENS = 1500
CLAIMS_BYTES_PER_MAP_CALL = 1200
CLAIMS_BYTES_MAX = 24_000
MAP_PARALLELISM = 4
SEED = 7  # sent with every call, and recorded, so a run can be replayed

MAP_MARKER = "[glasskey research: map]"
ANALYSIS_MARKER = "[glasskey research: analysis]"

MAP_SYSTEM = (
    f"{MAP_MARKER} You summarise one chunk of a document for a market-research question. "
    'Answer with JSON only: {"summary": "<two sentences>", "claims": [{"text": "<a claim the chunk makes>", '
    '"quote": "<the words of the chunk that support it>"}]}. Use only what the chunk says; no claims is fine.'
)
ANALYSIS_SYSTEM = (
    f"{ANALYSIS_MARKER} You write the analysis section of a market-research note in Markdown. The figures "
    "table was computed from the data: refer to it, never restate other numbers. Cite document claims with "
    "their tag, e.g. [doc: name, chunk n]. If there is no evidence for a point, say so."
)


@dataclass(frozen=True)
class PlannedCall:
    step: str  # "map" or "analysis"
    position: int
    model: str
    label: str
    body: dict[str, Any]
    document: str | None = None
    chunk: int | None = None  # 1-based, as cited

    @property
    def input_bytes(self) -> int:
        return sum(len(str(m["content"]).encode()) for m in self.body["messages"])

    def public(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "position": self.position,
            "model": self.model,
            "label": self.label,
            "input_bytes": self.input_bytes,
            "max_tokens": self.body["max_tokens"],
        }


@dataclass(frozen=True)
class Plan:
    question: str
    quick_model: str
    deep_model: str
    depth: str
    calls: list[PlannedCall]
    claims_bytes_max: int

    def steps(self) -> list[dict[str, Any]]:
        maps = [c for c in self.calls if c.step == "map"]
        return [
            {"name": "read", "model": None, "calls": 0, "what": "parse price files and documents (local)"},
            {
                "name": "map",
                "model": self.quick_model,
                "calls": len(maps),
                "parallelism": MAP_PARALLELISM,
                "input_bytes": [c.input_bytes for c in maps],
                "what": f"{DEPTH_PASSES[self.depth]} pass(es) of the quick model over each document chunk: "
                "summary and claims as JSON",
            },
            {"name": "metrics", "model": None, "calls": 0, "what": "returns, volatility, drawdown, Sharpe (local)"},
            {
                "name": "analysis",
                "model": self.deep_model,
                "calls": 1,
                "parallelism": 1,
                "input_bytes": [c.input_bytes for c in self.calls if c.step == "analysis"],
                "what": "the deep model writes the analysis from the computed table and the claims",
            },
            {"name": "report", "model": None, "calls": 0, "what": "Markdown, JSON and SVG from the computed table"},
        ]


def map_body(model: str, question: str, document: str, chunk: int, text: str, focus: str) -> dict[str, Any]:
    user = f"Question: {question}\nLook for: {focus}\nDocument: {document}, chunk {chunk}\n\n{text}"
    return _body(model, MAP_SYSTEM, user, MAP_MAX_TOKENS)


def analysis_body(model: str, question: str, table: str, claims: str) -> dict[str, Any]:
    user = f"Question: {question}\n\nFigures (computed from the data):\n{table}\n\nClaims from the documents:\n{claims}"
    return _body(model, ANALYSIS_SYSTEM, user, ANALYSIS_MAX_TOKENS)


def _body(model: str, system: str, user: str, max_tokens: int) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "seed": SEED,
    }


def make_plan(
    *, question: str, documents: list[Document], table: str, quick_model: str, deep_model: str, depth: str
) -> Plan:
    passes = DEPTH_PASSES[depth]
    calls: list[PlannedCall] = []
    for focus in PASS_FOCUS[:passes]:
        for document in documents:
            for index, text in enumerate(document.chunks, start=1):
                calls.append(
                    PlannedCall(
                        step="map",
                        position=len(calls),
                        model=quick_model,
                        label=f"{document.name} chunk {index}: {focus}",
                        body=map_body(quick_model, question, document.name, index, text, focus),
                        document=document.name,
                        chunk=index,
                    )
                )
    budget = min(CLAIMS_BYTES_MAX, CLAIMS_BYTES_PER_MAP_CALL * len(calls))
    # The placeholder has the budget's size in bytes, so its quote bounds any real claims text.
    placeholder = "." * budget if budget else "(no documents were given)"
    calls.append(
        PlannedCall(
            step="analysis",
            position=len(calls),
            model=deep_model,
            label="analysis of the figures and claims",
            body=analysis_body(deep_model, question, table, placeholder),
        )
    )
    return Plan(question, quick_model, deep_model, depth, calls, max(budget, len(placeholder)))


def fit_claims(text: str, budget_bytes: int) -> str:
    """``text`` cut to at most ``budget_bytes`` of UTF-8 (never mid-character)."""
    raw = text.encode()
    if len(raw) <= budget_bytes:
        return text
    return raw[:budget_bytes].decode("utf-8", errors="ignore")
