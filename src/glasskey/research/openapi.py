"""The OpenAPI 3.1 document of the ``/v1/research`` API, written by hand beside its routes.

The research routes are plain Starlette (thin, like the rest of ``/v1``), so nothing generates
their document; a test checks that every route is in it and every path in it is a route.
"""

from __future__ import annotations

from typing import Any

from glasskey.research import NOTICE

_ERROR = {"$ref": "#/components/responses/Error"}
_JOB_ID = [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}]
_SPEC_PROPERTIES: dict[str, Any] = {
    "question": {"type": "string", "maxLength": 2000},
    "inputs": {"type": "array", "items": {"type": "string"}, "description": "file ids from POST /files"},
    "depth": {"enum": ["quick", "standard", "thorough"], "default": "standard"},
    "quick_model": {"type": "string", "default": "gpt-4o-mini"},
    "deep_model": {"type": "string", "default": "claude-sonnet-4-5"},
    "start": {"type": "string", "format": "date"},
    "end": {"type": "string", "format": "date"},
    "risk_free_rate": {"type": "string", "description": "a yearly fraction, e.g. 0.02", "default": "0"},
}


def _json(description: str, ref: str | None = None) -> dict[str, Any]:
    schema = {"$ref": f"#/components/schemas/{ref}"} if ref else {"type": "object"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def research_openapi(server_url: str) -> dict[str, Any]:
    errors = {"400": _ERROR, "401": _ERROR, "402": _ERROR, "403": _ERROR, "404": _ERROR, "429": _ERROR}
    spec_body = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobSpec"}}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "glasskey research assistant",
            "version": "1",
            "description": f"{NOTICE} Market research on a key's quick and deep models: preflight (permission, "
            "runtime, cost), jobs whose every model call is a charged, receipted request, and reports whose "
            "figures are computed from the data. See docs/research.md.",
        },
        "servers": [{"url": f"{server_url}/v1/research"}],
        "security": [{"key": []}],
        "paths": {
            "/files": {
                "post": {
                    "summary": "Upload price files (CSV) and documents (Markdown, text, PDF)",
                    "requestBody": {
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"file": {"type": "array", "items": {"format": "binary"}}},
                                }
                            }
                        }
                    },
                    "responses": {"201": _json("the stored files: id, name, kind, sha256, bytes"), **errors},
                }
            },
            "/preflight": {
                "post": {
                    "summary": "Plan, permission per model, expected runtime and cost; moves no money",
                    "requestBody": spec_body,
                    "responses": {"200": _json("the preflight", "Preflight"), **errors},
                }
            },
            "/jobs": {
                "post": {
                    "summary": "Confirm a job with the most it may charge; it starts at once",
                    "description": "Inputs by id after POST /files (JSON or form field `inputs`, repeated), or "
                    "uploaded with the job as multipart parts named `file`: stored by content hash as POST /files "
                    "stores them, under the same limits and the same 400s naming file, line and column.",
                    "requestBody": {
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/JobConfirm"}},
                            "multipart/form-data": {"schema": {"$ref": "#/components/schemas/JobConfirmForm"}},
                        }
                    },
                    "responses": {"201": _json("the job", "Job"), **errors},
                },
                "get": {"summary": "This key's jobs, newest first", "responses": {"200": _json("a list of jobs")}},
            },
            "/jobs/{job_id}": {
                "get": {
                    "summary": "A job's status",
                    "parameters": _JOB_ID,
                    "responses": {"200": _json("the job", "Job"), **errors},
                }
            },
            "/jobs/{job_id}/events": {
                "get": {
                    "summary": "Server-sent events: `progress` whenever the job changes, then `end`",
                    "parameters": _JOB_ID,
                    "responses": {"200": {"description": "text/event-stream", "content": {"text/event-stream": {}}}},
                }
            },
            "/jobs/{job_id}/cancel": {
                "post": {
                    "summary": "Cancel a job",
                    "parameters": _JOB_ID,
                    "responses": {"200": _json("the job", "Job"), **errors},
                }
            },
            "/jobs/{job_id}/resume": {
                "post": {
                    "summary": "Resume an unfinished job no live gateway process runs (claimed by this one)",
                    "parameters": _JOB_ID,
                    "responses": {
                        "200": _json("the job, with running_in, resumed_at, resumed_by, resume_count", "Job"),
                        "409": _ERROR,
                        **errors,
                    },
                }
            },
            "/jobs/{job_id}/report": {
                "get": {
                    "summary": "The report as JSON",
                    "parameters": _JOB_ID,
                    "responses": {"200": _json("the report"), **errors},
                }
            },
            "/jobs/{job_id}/report.{fmt}": {
                "get": {
                    "summary": "The report as Markdown (`md`) or JSON (`json`)",
                    "parameters": [
                        *_JOB_ID,
                        {"name": "fmt", "in": "path", "required": True, "schema": {"enum": ["md", "json"]}},
                    ],
                    "responses": {
                        "200": {"description": "the report", "content": {"text/markdown": {}, "application/json": {}}},
                        **errors,
                    },
                }
            },
            "/openapi.json": {
                "get": {"summary": "This document", "security": [], "responses": {"200": _json("OpenAPI")}}
            },
        },
        "components": {
            "securitySchemes": {"key": {"type": "http", "scheme": "bearer", "description": "a glasskey key, gk-..."}},
            "schemas": {
                "JobSpec": {"type": "object", "required": ["question", "inputs"], "properties": _SPEC_PROPERTIES},
                "JobConfirm": {
                    "type": "object",
                    "required": ["question", "inputs", "max_charge_micros"],
                    "properties": {**_SPEC_PROPERTIES, "max_charge_micros": {"type": "integer", "minimum": 0}},
                },
                "JobConfirmForm": {
                    "type": "object",
                    "required": ["question", "max_charge_micros"],
                    "properties": {
                        **_SPEC_PROPERTIES,
                        "max_charge_micros": {"type": "integer", "minimum": 0},
                        "file": {"type": "array", "items": {"format": "binary"}, "description": "files to upload"},
                    },
                },
                "Preflight": {
                    "type": "object",
                    "properties": {
                        name: {"type": "object"} for name in ("plan", "runtime", "cost", "wallet", "budgets", "data")
                    }
                    | {"models": {"type": "array"}, "admitted": {"type": "boolean"}, "notice": {"const": NOTICE}},
                },
                "Job": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "status": {
                            "enum": ["queued", "running", "interrupted", "succeeded", "failed", "cancelled", "capped"]
                        },
                        "calls_done": {"type": "integer"},
                        "calls_planned": {"type": "integer"},
                        "spent_micros": {"type": "integer"},
                        "confirmed_max_micros": {"type": "integer"},
                        "running_in": {
                            "type": ["string", "null"],
                            "description": "the gateway process (instance id) running the job now",
                        },
                        "resumed_at": {"type": ["string", "null"], "format": "date-time"},
                        "resumed_by": {
                            "type": ["string", "null"],
                            "description": "the gateway process (instance id) that last resumed the job",
                        },
                        "resume_count": {"type": "integer"},
                    },
                },
            },
            "responses": {
                "Error": _json(
                    "the brief's error shape: error.message, type, code, param, request_id, source; "
                    "input errors add file, line and column"
                )
            },
        },
    }
