"""OpenAI's published Batch object schema, as JSON Schema, for checking what the gateway answers.

Source: the OpenAI API specification (github.com/openai/openai-openapi, ``openapi.yaml``,
``components.schemas.Batch`` with ``BatchRequestCounts``, ``BatchError`` and the batch ``usage``
object added in September 2025). Transcribed by hand: the copy of openapi.yaml we could read
predates batches, so the fields were checked one by one against the SDK's ``openai.types.Batch``
(generated from the same spec). Two deliberate differences: the optional fields admit ``null``,
as the API's own answers carry them (``"expires_at": null``); and unknown properties are refused
(``additionalProperties: false``), so the gateway cannot drift into a shape of its own.
"""

from __future__ import annotations

from typing import Any

_INT = {"type": "integer"}
_OPT_INT = {"type": ["integer", "null"]}
_OPT_STR = {"type": ["string", "null"]}
_STATUSES = [
    "validating",
    "failed",
    "in_progress",
    "finalizing",
    "completed",
    "expired",
    "cancelling",
    "cancelled",
]

BATCH_ERROR: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "code": {"type": "string"},
        "message": {"type": "string"},
        "param": _OPT_STR,
        "line": _OPT_INT,
    },
}

BATCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": [
        "id",
        "object",
        "endpoint",
        "input_file_id",
        "completion_window",
        "status",
        "created_at",
    ],
    "properties": {
        "id": {"type": "string"},
        "object": {"type": "string", "enum": ["batch"]},
        "endpoint": {"type": "string"},
        "model": _OPT_STR,
        "errors": {
            "type": ["object", "null"],
            "additionalProperties": False,
            "properties": {
                "object": {"type": "string"},
                "data": {"type": "array", "items": BATCH_ERROR},
            },
        },
        "input_file_id": {"type": "string"},
        "completion_window": {"type": "string"},
        "status": {"type": "string", "enum": _STATUSES},
        "output_file_id": _OPT_STR,
        "error_file_id": _OPT_STR,
        "created_at": _INT,
        "in_progress_at": _OPT_INT,
        "expires_at": _OPT_INT,
        "finalizing_at": _OPT_INT,
        "completed_at": _OPT_INT,
        "failed_at": _OPT_INT,
        "expired_at": _OPT_INT,
        "cancelling_at": _OPT_INT,
        "cancelled_at": _OPT_INT,
        "request_counts": {
            "type": ["object", "null"],
            "additionalProperties": False,
            "required": ["total", "completed", "failed"],
            "properties": {"total": _INT, "completed": _INT, "failed": _INT},
        },
        "usage": {
            "type": ["object", "null"],
            "additionalProperties": False,
            "required": [
                "input_tokens",
                "input_tokens_details",
                "output_tokens",
                "output_tokens_details",
                "total_tokens",
            ],
            "properties": {
                "input_tokens": _INT,
                "input_tokens_details": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["cached_tokens"],
                    "properties": {"cached_tokens": _INT},
                },
                "output_tokens": _INT,
                "output_tokens_details": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["reasoning_tokens"],
                    "properties": {"reasoning_tokens": _INT},
                },
                "total_tokens": _INT,
            },
        },
        "metadata": {
            "type": ["object", "null"],
            "maxProperties": 16,
            "additionalProperties": {"type": "string", "maxLength": 512},
        },
    },
}
