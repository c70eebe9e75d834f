"""Shared HTTP pieces: JSON and Status responses, query parameter parsing."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from llmbatch_sandbox.apiserver.errors import ApiError, bad_request

JSON = dict[str, Any]


def json_response(body: JSON, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
    )


def error_response(exc: ApiError) -> web.Response:
    response = json_response(exc.status(), exc.code)
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def flag(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1")


def int_param(query: Any, key: str) -> int | None:
    value = query.get(key)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise bad_request(f"invalid value for {key}: {value!r}") from None
