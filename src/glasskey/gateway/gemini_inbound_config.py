"""The settings of a Gemini-format request in OpenAI's terms, and reading Gemini's JSON fields.

``generation_params`` turns a ``generationConfig`` into OpenAI sampling parameters,
``response_format`` and ``reasoning_effort`` (with the exact thinking settings an effort level
cannot carry, for Gemini routes: ``gateway.inbound_thinking``); ``tool_params`` turns ``tools`` and ``toolConfig``
into OpenAI ``tools`` and ``tool_choice``; ``json_schema_of`` rewrites Google's OpenAPI-subset
``Schema`` as JSON Schema. ``fields`` reads one JSON object of the request: both spellings
Google's JSON parser accepts (``maxOutputTokens``, ``max_output_tokens``), nulls as absent, and
an unknown or untranslatable field refused by its path. The contents are ``gemini_inbound``'s.
"""

from __future__ import annotations

from typing import Any

from glasskey.errors import ClientError
from glasskey.gateway.inbound_thinking import google_thinking

# The tables the gemini provider translates with, read backwards here.
from glasskey.providers.gemini_translate import _THINKING_BUDGETS as THINKING_BUDGETS
from glasskey.providers.gemini_translate import _TOOL_CHOICE_MODES as TOOL_CHOICE_MODES

_GENERATION_FIELDS = frozenset(
    {"temperature", "topP", "candidateCount", "maxOutputTokens", "stopSequences", "presencePenalty",
     "frequencyPenalty", "seed", "responseMimeType", "responseSchema", "responseJsonSchema", "thinkingConfig",
     "responseModalities", "responseLogprobs", "audioTimestamp", "enableEnhancedCivicAnswers"}
)  # fmt: skip
# Switches that are harmless when off (their proto default); when on, nothing OpenAI-shaped carries them.
_OFF_ONLY = ("responseLogprobs", "audioTimestamp", "enableEnhancedCivicAnswers")
_SAMPLING = {
    "temperature": "temperature",
    "topP": "top_p",
    "candidateCount": "n",
    "maxOutputTokens": "max_tokens",
    "presencePenalty": "presence_penalty",
    "frequencyPenalty": "frequency_penalty",
    "seed": "seed",
}
_CALLING_MODES = {mode: choice for choice, mode in TOOL_CHOICE_MODES.items()}
# Gemini's thinking budget becomes the smallest OpenAI effort whose Gemini budget covers it.
_EFFORTS_BY_BUDGET = sorted(
    ((budget, effort) for effort, budget in THINKING_BUDGETS.items() if effort not in ("none", "minimal")),
)
_THINKING_LEVELS = frozenset({"minimal", "low", "medium", "high"})
_THINKING_FIELDS = frozenset({"thinkingBudget", "thinkingLevel", "includeThoughts"})


def unsupported(path: str, why: str = "") -> ClientError:
    reason = why or "glasskey's Gemini API cannot carry it to a route"
    return ClientError(f"`{path}` is not supported: {reason}", param=path, code="unsupported_parameter")


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def fields(value: Any, where: str, known: frozenset[str]) -> dict[str, Any]:
    """The object's fields by their camelCase names, nulls left out; an unknown field is refused."""
    if not isinstance(value, dict):
        raise ClientError(f"`{where or 'the request body'}` must be an object", param=where or None)
    found: dict[str, Any] = {}
    for name, item in value.items():
        spelled = camel(name)
        if item is None:
            continue
        if spelled not in known:
            raise unsupported(join(where, spelled))
        found[spelled] = item
    return found


def as_list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ClientError(f"`{where}` must be an array", param=where)
    return value


def as_text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ClientError(f"`{where}` must be a string", param=where)
    return value


def generation_params(config: Any) -> dict[str, Any]:
    where = "generationConfig"
    found = fields(config, where, _GENERATION_FIELDS)
    params: dict[str, Any] = {_SAMPLING[name]: found[name] for name in _SAMPLING if name in found}
    for name in _OFF_ONLY:
        if found.get(name):
            raise unsupported(f"{where}.{name}")
    stops = found.get("stopSequences")
    if stops:
        params["stop"] = [as_text(stop, f"{where}.stopSequences") for stop in as_list(stops, f"{where}.stopSequences")]
    modalities = found.get("responseModalities")
    if modalities is not None and [str(m).upper() for m in as_list(modalities, f"{where}.responseModalities")] not in (
        [],
        ["TEXT"],
    ):
        raise unsupported(f"{where}.responseModalities", "only TEXT output can be generated")
    response_format = _response_format(found)
    if response_format is not None:
        params["response_format"] = response_format
    if "thinkingConfig" in found:
        effort = _reasoning_effort(found["thinkingConfig"], f"{where}.thinkingConfig")
        if effort is not None:
            params["reasoning_effort"] = effort
        params.update(_exact_thinking(found["thinkingConfig"], f"{where}.thinkingConfig"))
    return params


def _exact_thinking(config: Any, where: str) -> dict[str, Any]:
    """The budget as asked (not the effort level it rounds to) and ``includeThoughts``, for Gemini
    routes; other routes do without (``inbound_thinking.for_route`` names ``includeThoughts``)."""
    found = fields(config, where, _THINKING_FIELDS)
    names = (("thinking_budget", "thinkingBudget"), ("include_thoughts", "includeThoughts"))
    return google_thinking({name: found[field] for name, field in names if field in found})


def _response_format(found: dict[str, Any]) -> dict[str, Any] | None:
    mime = found.get("responseMimeType", "text/plain")
    schema = found.get("responseJsonSchema")
    if schema is None and "responseSchema" in found:
        schema = json_schema_of(found["responseSchema"])
    if mime == "application/json":
        if schema is None:
            return {"type": "json_object"}
        return {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
    if mime != "text/plain":
        raise unsupported("generationConfig.responseMimeType", f"{mime!r} output has no OpenAI equivalent")
    if schema is not None:
        raise ClientError(
            "a response schema needs `responseMimeType: application/json`", param="generationConfig.responseSchema"
        )
    return None


def _reasoning_effort(config: Any, where: str) -> str | None:
    found = fields(config, where, _THINKING_FIELDS)
    # ``includeThoughts`` goes as it is, to Gemini routes only (``_exact_thinking``).
    if not isinstance(found.get("includeThoughts", False), bool):
        raise ClientError(f"`{where}.includeThoughts` must be a boolean", param=f"{where}.includeThoughts")
    level = found.get("thinkingLevel")
    if isinstance(level, str) and level.lower() in _THINKING_LEVELS:
        return level.lower()
    if level is not None and level != "THINKING_LEVEL_UNSPECIFIED":
        raise unsupported(f"{where}.thinkingLevel", f"the level {level!r} is unknown")
    budget = found.get("thinkingBudget")
    if budget is None or budget == -1:  # -1: the model decides, as it does when nothing is asked
        return None
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
        raise ClientError(f"`{where}.thinkingBudget` must be -1, 0 or a positive integer", param=where)
    if budget == 0:
        return "none"
    return next((effort for cap, effort in _EFFORTS_BY_BUDGET if budget <= cap), _EFFORTS_BY_BUDGET[-1][1])


def json_schema_of(schema: Any) -> Any:
    """JSON Schema for Google's OpenAPI-subset ``Schema`` (upper-case types, ``nullable``)."""
    if isinstance(schema, list):
        return [json_schema_of(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted: dict[str, Any] = {}
    for raw_name, value in schema.items():
        name = camel(raw_name)
        if name in ("propertyOrdering", "nullable", "example") or value is None:
            continue  # ordering and examples are hints Gemini alone reads; nullable is folded below
        if name == "type" and isinstance(value, str):
            converted["type"] = value.lower()
        elif name == "properties" and isinstance(value, dict):
            converted["properties"] = {key: json_schema_of(item) for key, item in value.items()}
        elif name in ("items", "anyOf"):
            converted[name] = json_schema_of(value)
        else:
            converted[name] = value
    if schema.get("nullable") and isinstance(converted.get("type"), str):
        converted["type"] = [converted["type"], "null"]
    return converted


def tool_params(tools: Any, tool_config: Any) -> dict[str, Any]:
    declared: list[dict[str, Any]] = []
    for index, tool in enumerate(as_list(tools, "tools")):
        found = fields(tool, f"tools[{index}]", frozenset({"functionDeclarations"}))
        for position, declaration in enumerate(as_list(found.get("functionDeclarations", []), f"tools[{index}]")):
            declared.append(_function(declaration, f"tools[{index}].functionDeclarations[{position}]"))
    params: dict[str, Any] = {"tools": declared} if declared else {}
    if tool_config is None:
        return params
    config = fields(tool_config, "toolConfig", frozenset({"functionCallingConfig"}))
    calling = fields(
        config.get("functionCallingConfig", {}),
        "toolConfig.functionCallingConfig",
        frozenset({"mode", "allowedFunctionNames"}),
    )
    mode = str(calling.get("mode", "AUTO")).upper()
    if mode == "MODE_UNSPECIFIED":
        mode = "AUTO"
    if mode not in _CALLING_MODES:
        raise unsupported("toolConfig.functionCallingConfig.mode", f"the mode {mode!r} has no OpenAI equivalent")
    allowed = calling.get("allowedFunctionNames")
    if allowed and mode == "ANY":
        # ANY with a list means "call one of these": offering only those tools, with a call
        # required, asks exactly that of any provider.
        names = set(as_list(allowed, "toolConfig.functionCallingConfig.allowedFunctionNames"))
        params["tools"] = [tool for tool in declared if tool["function"]["name"] in names]
        if not params["tools"]:
            raise ClientError(
                "`allowedFunctionNames` names no declared function",
                param="toolConfig.functionCallingConfig.allowedFunctionNames",
            )
    elif allowed:
        raise unsupported("toolConfig.functionCallingConfig.allowedFunctionNames", "it is honoured only with mode ANY")
    if declared:
        params["tool_choice"] = _CALLING_MODES[mode]
    return params


def _function(declaration: Any, where: str) -> dict[str, Any]:
    found = fields(declaration, where, frozenset({"name", "description", "parameters", "parametersJsonSchema"}))
    function: dict[str, Any] = {"name": as_text(found.get("name"), f"{where}.name")}
    if "description" in found:
        function["description"] = as_text(found["description"], f"{where}.description")
    if "parametersJsonSchema" in found:
        function["parameters"] = found["parametersJsonSchema"]
    elif "parameters" in found:
        function["parameters"] = json_schema_of(found["parameters"])
    return {"type": "function", "function": function}
