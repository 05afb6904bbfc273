"""Reading the models' answers: the map step's JSON claims, and the claims text the deep model reads.

A map answer must be a JSON object ``{"summary": str, "claims": [{"text": str, "quote": str}]}``
(a Markdown code fence around it is tolerated). Anything else is malformed: the runner retries
the call once and then fails the step. The citation of a claim is attached here, from the chunk
the call was about, never taken from the model.
"""

from __future__ import annotations

import json
from typing import Any

from glasskey.research.plan import CLAIMS_BYTES_PER_MAP_CALL, fit_claims

CLAIMS_PER_CHUNK_MAX = 12


class MalformedAnswer(ValueError):
    """A model answer that is not of the shape the step asked for."""


def answer_text(body: dict[str, Any]) -> str:
    """The assistant's text of an OpenAI ``chat.completion`` body."""
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise MalformedAnswer("the answer has no message content") from None
    if not isinstance(content, str):
        raise MalformedAnswer("the answer's content is not text")
    return content


def parse_map_answer(text: str) -> dict[str, Any]:
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.strip("`").removeprefix("json").strip()
    try:
        data = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise MalformedAnswer(f"not JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(data, dict) or not isinstance(data.get("summary"), str):
        raise MalformedAnswer('expected an object with a "summary" string')
    claims = data.get("claims")
    if not isinstance(claims, list):
        raise MalformedAnswer('expected a "claims" array')
    clean = []
    for index, claim in enumerate(claims[:CLAIMS_PER_CHUNK_MAX]):
        if not isinstance(claim, dict) or not isinstance(claim.get("text"), str) or not claim["text"].strip():
            raise MalformedAnswer(f'claim {index} has no "text"')
        quote = claim.get("quote")
        clean.append({"text": claim["text"].strip(), "quote": quote.strip() if isinstance(quote, str) else ""})
    return {"summary": data["summary"].strip(), "claims": clean}


def citation(document: str, chunk: int) -> str:
    return f"[doc: {document}, chunk {chunk}]"


def claims_text(outputs: list[dict[str, Any]], budget_bytes: int) -> str:
    """The claims as the deep model reads them, each call's share and the whole within budget."""
    if not outputs:
        return "(no documents were given: there is no evidence beyond the price data)"
    parts = []
    for output in outputs:
        tag = citation(output["document"], output["chunk"])
        lines = [f"{tag} summary: {output['summary']}"]
        lines += [f"{tag} {claim['text']}" for claim in output["claims"]]
        parts.append(fit_claims("\n".join(lines), CLAIMS_BYTES_PER_MAP_CALL - 1))
    return fit_claims("\n".join(parts), budget_bytes)
