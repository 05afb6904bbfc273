"""Parsing and checking client request bodies, once, before anything else runs.

Bodies are parsed with orjson into plain dicts (orjson already refuses invalid UTF-8, lone
surrogates, NaN and nesting deeper than 1024). Then one walk over the whole body refuses, with a
400 ``source: client``:

* a NUL character in any string or key: PostgreSQL cannot store it, and a row it refuses must
  never reach the database (it would fail the request's receipt, and its batch with it);
* nesting deeper than ``BODY_DEPTH_MAX`` (64): orjson serialises at most 254 levels, and no real
  request needs more than a few;
* a field that would let a client choose or configure the upstream (``api_base``, ``base_url``,
  ``api_key``, ...: ``UPSTREAM_FIELDS``) at any depth, whatever its case, ``_`` or ``-``
  (``API_BASE``, ``extra_body.api_base``, ``metadata.baseURL``). Only operators choose where and
  how glasskey connects. JSON Schemas the client defines for the model (tool ``parameters``,
  ``response_format.json_schema.schema``) are exempt from the name rule: a tool may well take an
  ``api_key`` argument, and a schema never configures a connection.

Then each endpoint's fields are checked against their bounds (``gateway.parameters``).
"""

from __future__ import annotations

from typing import Any

import orjson

from glasskey.errors import ClientError, shown
from glasskey.gateway import parameters as p

BODY_DEPTH_MAX = 64
# Compared after lower-casing and dropping ``_`` and ``-``: ``api_base``, ``API-BASE`` and
# ``apiBase`` are one name. These are the connection settings of the OpenAI SDKs, LiteLLM and
# the clouds' SDKs, any of which an OpenAI-compatible host behind a route might honour.
UPSTREAM_FIELDS = (
    "api_base",
    "base_url",
    "api_key",
    "api_version",
    "api_type",
    "custom_llm_provider",
    "upstream_url",
    "organization",
    "extra_headers",
    "headers",
    "proxy",
    "proxy_url",
    "azure_ad_token",
    "azure_endpoint",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "aws_region_name",
    "vertex_project",
    "vertex_location",
    "vertex_credentials",
)
_UPSTREAM_NAMES = {name.replace("_", ""): name for name in UPSTREAM_FIELDS}
# Names most bodies are made of: none is an upstream field, so they skip the comparison.
_COMMON_NAMES = frozenset(
    {
        "model", "messages", "role", "content", "name", "type", "text", "image_url", "url", "detail",
        "input_audio", "data", "format", "file", "file_id", "file_data", "filename", "tool_calls",
        "tool_call_id", "id", "function", "arguments", "refusal", "audio", "max_tokens",
        "max_completion_tokens", "temperature", "top_p", "n", "stream", "stream_options", "include_usage",
        "stop", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "user",
        "seed", "tools", "tool_choice", "parallel_tool_calls", "response_format", "json_schema", "schema",
        "strict", "description", "parameters", "properties", "required", "items", "enum", "metadata",
        "store", "reasoning_effort", "service_tier", "modalities", "input", "dimensions", "encoding_format",
        "system", "parts", "contents", "generationConfig", "cache_control", "source", "media_type",
    }
)  # fmt: skip
# Gemini's schema fields, in the camelCase and snake_case that its JSON accepts alike.
_GEMINI_SCHEMA_FIELDS = (
    "parameters",
    "response",
    "parametersJsonSchema",
    "parameters_json_schema",
    "responseSchema",
    "response_schema",
    "responseJsonSchema",
    "response_json_schema",
)


def _plain(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise ClientError(f"The request body is not valid JSON: {shown(str(error))}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise ClientError("The request body must be a JSON object", code="invalid_json")
    check_body_text(body)
    return body


# The top-level fields under which ``_schemas`` looks, and its answer when a body has none.
_SCHEMA_HOLDERS = frozenset(("tools", "functions", "response_format", "generationConfig", "generation_config"))
_NO_SCHEMAS: frozenset[int] = frozenset()


def _schemas(body: dict[str, Any]) -> frozenset[int] | set[int]:
    """The ids of the JSON Schemas the client wrote for the model (exempt from the name rule).

    In OpenAI's shape (tool ``function.parameters``, a custom tool's ``format``, ``functions``,
    ``response_format.json_schema.schema``), Anthropic's (a tool's ``input_schema``) and
    Gemini's (``functionDeclarations[].parameters``, ``generationConfig.responseSchema``), since
    the native endpoints parse their bodies here too.
    """
    if _SCHEMA_HOLDERS.isdisjoint(body):
        return _NO_SCHEMAS  # most bodies: no tools, no response format (0.42 -> 0.11 µs)
    found: list[Any] = []
    tools, functions = body.get("tools"), body.get("functions")
    for tool in tools if isinstance(tools, list) else ():
        if not isinstance(tool, dict):
            continue
        found.append(tool.get("input_schema"))
        for name in ("function", "custom"):
            inner = tool.get(name)
            if isinstance(inner, dict):
                found.extend((inner.get("parameters"), inner.get("format")))
        declarations = tool.get("functionDeclarations", tool.get("function_declarations"))
        for declaration in declarations if isinstance(declarations, list) else ():
            if isinstance(declaration, dict):
                found.extend(declaration.get(name) for name in _GEMINI_SCHEMA_FIELDS)
    for function in functions if isinstance(functions, list) else ():
        if isinstance(function, dict):
            found.append(function.get("parameters"))
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and isinstance(response_format.get("json_schema"), dict):
        found.append(response_format["json_schema"].get("schema"))
    config = body.get("generationConfig", body.get("generation_config"))
    if isinstance(config, dict):
        found.extend(config.get(name) for name in _GEMINI_SCHEMA_FIELDS)
    return {id(node) for node in found if isinstance(node, dict)}


# A frame of the walk: a node, its depth, whether names are checked in it, and its link (the
# parent frame and the key that led here), from which a path is written only for an error.
_Frame = tuple[Any, int, bool, Any]


def _path(frame: _Frame, key: Any = None) -> str:
    keys = [] if key is None else [str(key)]
    link = frame[3]
    while link is not None:
        frame, parent_key = link
        keys.append(str(parent_key))
        link = frame[3]
    return ".".join(reversed(keys)) or "body"


def _nul(where: str) -> ClientError:
    return ClientError(
        f"`{shown(where)}` contains a NUL character (\\u0000), which glasskey does not accept in any text",
        param=where,
    )


def _upstream_field(where: str, name: str) -> ClientError:
    return ClientError(
        f"`{shown(where)}` is not accepted: `{name}` would choose or configure the upstream,"
        " and only the gateway's operator does that",
        param=where,
    )


def check_body_text(body: dict[str, Any]) -> None:
    """One pass over every key and value: no NUL, no depth past 64, no upstream-choosing field.

    It runs on every request, so it is written for speed: exact type checks (orjson makes only
    plain dicts and lists), the common field names skip the spelling-blind comparison, and a
    path is written out only for an error.
    """
    schemas = _schemas(body)
    # An explicit stack: a recursive walk would let a deep body exhaust Python's own stack.
    stack: list[_Frame] = [(body, 1, True, None)]
    while stack:
        frame = stack.pop()
        node, depth, names_checked, _ = frame
        if depth > BODY_DEPTH_MAX:
            path = _path(frame)
            raise ClientError(
                f"The request body is nested deeper than {BODY_DEPTH_MAX} levels (at `{shown(path)}`)", param=path
            )
        if type(node) is dict:
            names_checked = names_checked and id(node) not in schemas
            pairs: Any = node.items()
        else:
            pairs = enumerate(node)
        for key, value in pairs:
            if type(key) is str:
                if "\x00" in key:
                    raise _nul(_path(frame))
                if names_checked and key not in _COMMON_NAMES:
                    name = _UPSTREAM_NAMES.get(_plain(key))
                    if name is not None:
                        raise _upstream_field(_path(frame, key), name)
            kind = type(value)
            if kind is str:
                if "\x00" in value:
                    raise _nul(_path(frame, key))
            elif kind is dict or kind is list:
                stack.append((value, depth + 1, names_checked, (frame, key)))


def check_model_field(body: dict[str, Any]) -> str:
    return p.check_model_name(body.get("model"))


def check_chat_body(body: dict[str, Any]) -> None:
    check_model_field(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ClientError("`messages` must be a non-empty array", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ClientError(f"`messages[{index}]` must be an object with a `role`", param=f"messages[{index}]")
    p.check_bounds(body, p.CHAT_BOUNDS)
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise ClientError("`stream_options` must be an object", param="stream_options")
    if options and options.get("include_usage") is not None and not isinstance(options["include_usage"], bool):
        raise ClientError("`stream_options.include_usage` must be true or false", param="stream_options")
    p.check_text(body, "user", p.USER_MAX_CHARS)
    p.check_metadata(body)
    p.check_stop(body)
    p.check_logit_bias(body)
    p.check_list(body, "tools", p.TOOLS_MAX)
    p.check_list(body, "functions", p.TOOLS_MAX)


def check_embeddings_body(body: dict[str, Any]) -> None:
    check_model_field(body)
    p.check_embedding_input(body.get("input"))
    p.check_bounds(body, p.EMBEDDINGS_BOUNDS)
    p.check_text(body, "user", p.USER_MAX_CHARS)
    encoding_format = body.get("encoding_format")
    if encoding_format is not None and encoding_format not in ("float", "base64"):
        raise ClientError("`encoding_format` must be `float` or `base64`", param="encoding_format")
