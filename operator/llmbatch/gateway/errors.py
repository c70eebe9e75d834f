"""OpenAI's error shape, ``{"error": {"message", "type", "param", "code"}}``, for every error
the gateway answers, including FastAPI's own 404s and 422 validation errors (which the SDK
would otherwise turn into unreadable exceptions)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII escaped. Error bodies echo user data (custom_ids), and a lone
    surrogate (legal in JSON as \\ud800) cannot be encoded as UTF-8: escaping keeps such an
    answer a 400 instead of a 500."""

    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, ensure_ascii=True, allow_nan=False, separators=(",", ":")
        ).encode("ascii")


INVALID_REQUEST = "invalid_request_error"
AUTHENTICATION = "authentication_error"
PERMISSION = "permission_error"
NOT_FOUND = "not_found_error"
RATE_LIMIT = "rate_limit_error"
SERVER = "server_error"
UNAVAILABLE = "service_unavailable_error"


class ApiError(Exception):
    """An error the client should see, with its HTTP status and OpenAI fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = INVALID_REQUEST,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.type,
            "param": self.param,
            "code": self.code,
        }
        error.update(self.extra)
        return {"error": error}

    def response(self) -> JSONResponse:
        return AsciiJSONResponse(self.body(), status_code=self.status, headers=self.headers)


def not_found(kind: str, ident: str, param: str | None = None) -> ApiError:
    # Another tenant's object gets exactly this answer too: existence is not disclosed.
    return ApiError(404, f"No such {kind}: '{ident}'", param=param, code=None, type=INVALID_REQUEST)


def bad_request(
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    extra: dict[str, Any] | None = None,
) -> ApiError:
    return ApiError(400, message, param=param, code=code, extra=extra)


def _http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        message = f"Invalid URL ({request.method} {request.url.path})"
        return ApiError(404, message, type=INVALID_REQUEST).response()
    if exc.status_code == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}"
        return ApiError(405, message, type=INVALID_REQUEST).response()
    if exc.status_code == 413:
        return ApiError(413, str(exc.detail), code="request_too_large").response()
    etype = SERVER if exc.status_code >= 500 else INVALID_REQUEST
    return ApiError(
        exc.status_code, str(exc.detail), type=etype, headers=dict(exc.headers or {})
    ).response()


def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    # loc is ("body", "field", ...) or ("query", "limit"); the param is what follows the source.
    loc = [str(p) for p in first.get("loc", ())]
    param = ".".join(loc[1:]) if len(loc) > 1 else (loc[0] if loc else None)
    if first.get("type") == "json_invalid":
        message = f"We could not parse the JSON body of your request: {first.get('msg')}"
        return ApiError(400, message, param=None, code="invalid_json").response()
    message = f"{param}: {first.get('msg')}" if param else str(first.get("msg"))
    return ApiError(400, message, param=param, code="invalid_value").response()


def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return exc.response()


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # The traceback goes to the log (Starlette re-raises after this); the client gets no detail.
    return ApiError(
        500, "The server had an error while processing your request.", type=SERVER
    ).response()


def _unavailable(backend: str, service: str) -> Callable[[Request, Exception], JSONResponse]:
    """A handler for a backend that failed (S3, the Kubernetes API): 503 with Retry-After,
    the cause in the log and not in the answer."""

    def handler(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s error on %s %s: %s", backend, request.method, request.url.path, exc)
        return ApiError(
            503,
            f"The {service} is not available right now; retry shortly.",
            type=UNAVAILABLE,
            headers={"Retry-After": "5"},
        ).response()

    return handler


def install_error_handlers(app: FastAPI) -> None:
    from llmbatch.kube import KubeError
    from llmbatch.storage import StorageError

    app.add_exception_handler(Exception, _unexpected)
    app.add_exception_handler(StorageError, _unavailable("storage", "file store"))
    app.add_exception_handler(KubeError, _unavailable("Kubernetes API", "batch service"))
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation_error)
