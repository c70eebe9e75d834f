"""Refuse oversized JSON bodies before FastAPI reads them into memory.

Uploads (multipart) are streamed and have their own limit; every other body is parsed whole,
so it is capped at ``limits.maxJsonBytes``: by Content-Length up front, or by counting the
bytes of a chunked body as they arrive.
"""

from __future__ import annotations

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmbatch.gateway.errors import ApiError


def _message(limit: int) -> str:
    return (
        f"The request body is larger than {limit} bytes; upload big batch inputs with "
        "POST /v1/files instead."
    )


class BodyTooLarge(HTTPException):
    """An HTTPException, so FastAPI's body reader passes it on instead of calling it a parse
    error; the error handlers render it in OpenAI's shape."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _message(limit))


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if headers.get(b"content-type", b"").startswith(b"multipart/form-data"):
            await self.app(scope, receive, send)
            return
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response = ApiError(413, _message(self.max_bytes), code="request_too_large")
            await response.response()(scope, receive, send)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counting_receive, send)
