"""OpenAI Batch file formats: the input line, the output line and the error line, and the
rules every input file must follow.

The validator works line by line over raw bytes, so the runner, the gateway and the CLI share
one set of rules and each reports the same line number and reason for the same bad line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmbatch.api import responses_api


class Endpoint(StrEnum):
    CHAT_COMPLETIONS = "/v1/chat/completions"
    COMPLETIONS = "/v1/completions"
    EMBEDDINGS = "/v1/embeddings"
    RESPONSES = "/v1/responses"


# OpenAI batch endpoints that need something vLLM does not do (moderation, image, video and
# audio models): refused by name, so a user learns why rather than "invalid url".
# Each covers the paths below it too (/v1/images/generations, /v1/audio/speech, ...).
UNSERVABLE_ENDPOINTS = ("/v1/moderations", "/v1/images", "/v1/videos", "/v1/audio")


def is_unservable(url: object) -> bool:
    """True for an OpenAI endpoint that vLLM cannot serve (see UNSERVABLE_ENDPOINTS)."""
    return isinstance(url, str) and any(
        url == known or url.startswith(known + "/") for known in UNSERVABLE_ENDPOINTS
    )


def served_endpoints() -> str:
    return ", ".join(e.value for e in Endpoint)


class ErrorCode(StrEnum):
    """``error.code`` of a line in errors.jsonl."""

    INVALID_REQUEST = "invalid_request"  # the line breaks a file rule (see LineRule)
    MODEL_NOT_FOUND = "model_not_found"  # body.model is not the served model
    ENGINE_ERROR = "engine_error"  # vLLM rejected or failed the request (status_code 400/500)
    BATCH_EXPIRED = "batch_expired"  # the deadline passed before the request ran
    BATCH_CANCELLED = "batch_cancelled"  # the batch was cancelled before the request ran
    UNSUPPORTED_ENDPOINT = "unsupported_endpoint"  # the line's url is one vLLM cannot serve


class LineRule(StrEnum):
    """Why a line was rejected; named in the error message so users can grep for it."""

    INVALID_JSON = "invalid_json"
    INVALID_UTF8 = "invalid_utf8"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_CUSTOM_ID = "missing_custom_id"
    DUPLICATE_CUSTOM_ID = "duplicate_custom_id"
    INVALID_METHOD = "invalid_method"
    INVALID_URL = "invalid_url"
    UNSUPPORTED_ENDPOINT = "unsupported_endpoint"
    MIXED_URL = "mixed_url"
    MISSING_MODEL = "missing_model"
    INVALID_BODY = "invalid_body"
    UNSUPPORTED_FIELD = "unsupported_field"
    GREEDY_CHOICES = "greedy_choices"
    LINE_TOO_LONG = "line_too_long"
    TOO_MANY_LINES = "too_many_lines"
    FILE_TOO_LARGE = "file_too_large"


MAX_CUSTOM_ID_LENGTH = 512
# vLLM treats a temperature below this as greedy (vllm.sampling_params._SAMPLING_EPS).
GREEDY_TEMPERATURE = 1e-5
DEFAULT_MAX_LINES = 50_000
DEFAULT_MAX_BYTES = 200 * 1024 * 1024


class InputLine(BaseModel):
    """One request: ``{"custom_id", "method": "POST", "url", "body": {"model", ...}}``."""

    model_config = ConfigDict(extra="forbid")

    custom_id: str = Field(min_length=1, max_length=MAX_CUSTOM_ID_LENGTH)
    method: Literal["POST"]
    url: Endpoint
    body: dict[str, Any]


class LineErrorBody(BaseModel):
    code: str
    message: str
    line: int | None = None


class ResponseBody(BaseModel):
    status_code: int
    request_id: str
    body: dict[str, Any]


class OutputLine(BaseModel):
    """A line of output.jsonl (``error`` null) or errors.jsonl (``response`` null, or a
    non-200 response for a request the engine rejected)."""

    id: str
    custom_id: str | None
    response: ResponseBody | None = None
    error: LineErrorBody | None = None


@dataclass(frozen=True)
class Limits:
    max_lines: int = DEFAULT_MAX_LINES
    max_bytes: int = DEFAULT_MAX_BYTES
    # A single line larger than this is rejected without parsing it.
    max_line_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True)
class LineError:
    """A rejected input line: 1-based line number, the rule it broke and a readable reason."""

    line: int
    rule: LineRule
    message: str
    custom_id: str | None = None
    code: ErrorCode = ErrorCode.INVALID_REQUEST

    def as_error_body(self) -> LineErrorBody:
        return LineErrorBody(
            code=self.code.value, message=f"{self.rule.value}: {self.message}", line=self.line
        )


@dataclass(frozen=True)
class ValidLine:
    line: int
    request: InputLine
    raw_size: int


class SeenIds(Protocol):
    """Where a validator keeps the custom_ids it has seen: a set, or a disk-backed index when
    the file is too large for a set of every id (the plan step, ``llmbatch validate``)."""

    def __contains__(self, custom_id: object, /) -> bool: ...

    def add(self, custom_id: str, /) -> None: ...


@dataclass
class FileValidator:
    """Checks an input file's lines one at a time, keeping only what the rules need: the
    custom_ids seen (duplicates) and the file's url (one endpoint a file).

    ``endpoint`` fixes the url every line must use; when None the first valid line fixes it.
    Blank lines are skipped, as OpenAI does, and counted in neither output.
    """

    endpoint: Endpoint | None = None
    limits: Limits = field(default_factory=Limits)
    check_duplicates: bool = True
    seen_ids: SeenIds = field(default_factory=set[str])
    lines: int = 0
    bytes_read: int = 0

    def check(self, lineno: int, raw: bytes) -> ValidLine | LineError | None:
        """Validate one raw line (newline optional). None for a blank line."""
        self.bytes_read += len(raw)
        stripped = raw.strip()
        if not stripped:
            return None
        self.lines += 1
        if self.lines > self.limits.max_lines:
            return LineError(
                lineno,
                LineRule.TOO_MANY_LINES,
                f"the file has more than {self.limits.max_lines} requests",
            )
        if self.bytes_read > self.limits.max_bytes:
            return LineError(
                lineno,
                LineRule.FILE_TOO_LARGE,
                f"the file is larger than {self.limits.max_bytes} bytes",
            )
        if len(stripped) > self.limits.max_line_bytes:
            return LineError(
                lineno,
                LineRule.LINE_TOO_LONG,
                f"the line is {len(stripped)} bytes; the limit is {self.limits.max_line_bytes}",
            )
        try:
            text = stripped.decode("utf-8")
        except UnicodeDecodeError as exc:
            return LineError(lineno, LineRule.INVALID_UTF8, f"not valid UTF-8 at byte {exc.start}")
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            # ValueError beyond JSONDecodeError: Python refuses integers over 4300 digits.
            if isinstance(exc, json.JSONDecodeError):
                reason = exc.msg
            elif isinstance(exc, RecursionError):
                reason = "nested too deeply"
            else:
                reason = str(exc).split(";")[0]
            return LineError(lineno, LineRule.INVALID_JSON, f"not valid JSON: {reason}")
        return self.check_object(lineno, data, len(stripped))

    def check_object(self, lineno: int, data: Any, size: int = 0) -> ValidLine | LineError:
        if not isinstance(data, dict):
            return LineError(lineno, LineRule.NOT_AN_OBJECT, "each line must be a JSON object")
        custom_id = data.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            return LineError(
                lineno, LineRule.MISSING_CUSTOM_ID, "custom_id is missing or not a non-empty string"
            )
        if len(custom_id) > MAX_CUSTOM_ID_LENGTH:
            return LineError(
                lineno,
                LineRule.MISSING_CUSTOM_ID,
                f"custom_id is longer than {MAX_CUSTOM_ID_LENGTH} characters",
            )
        if self.check_duplicates and custom_id in self.seen_ids:
            return LineError(
                lineno,
                LineRule.DUPLICATE_CUSTOM_ID,
                f"custom_id {custom_id!r} appears earlier in the file",
                custom_id,
            )
        error = self._check_fields(lineno, data, custom_id)
        if error is not None:
            return error
        try:
            request = InputLine.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "line"
            return LineError(lineno, LineRule.INVALID_BODY, f"{where}: {first['msg']}", custom_id)
        if self.check_duplicates:
            self.seen_ids.add(custom_id)
        if self.endpoint is None:
            # Only a valid line fixes the file's endpoint: a broken first line must not turn
            # every later line into a mixed_url error.
            self.endpoint = request.url
        return ValidLine(lineno, request, size)

    def _check_fields(self, lineno: int, data: dict[str, Any], custom_id: str) -> LineError | None:
        method = data.get("method")
        if method != "POST":
            return LineError(
                lineno, LineRule.INVALID_METHOD, f"method must be POST, got {method!r}", custom_id
            )
        url = data.get("url")
        if is_unservable(url):
            return LineError(
                lineno,
                LineRule.UNSUPPORTED_ENDPOINT,
                f"url {url} is an OpenAI endpoint vLLM cannot serve; batches here run "
                f"{served_endpoints()}",
                custom_id,
                ErrorCode.UNSUPPORTED_ENDPOINT,
            )
        try:
            endpoint = Endpoint(url if isinstance(url, str) else "")
        except ValueError:
            return LineError(
                lineno,
                LineRule.INVALID_URL,
                f"url {url!r} is not supported; use one of {served_endpoints()}",
                custom_id,
            )
        if self.endpoint is not None and endpoint != self.endpoint:
            return LineError(
                lineno,
                LineRule.MIXED_URL,
                f"url {url} differs from the file's endpoint {self.endpoint.value}",
                custom_id,
            )
        body = data.get("body")
        if not isinstance(body, dict):
            return LineError(lineno, LineRule.INVALID_BODY, "body must be a JSON object", custom_id)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return LineError(
                lineno,
                LineRule.MISSING_MODEL,
                "body.model is missing or not a non-empty string",
                custom_id,
            )
        if endpoint == Endpoint.RESPONSES:
            return _responses_error(lineno, body, custom_id)
        return _greedy_choices_error(lineno, body, custom_id)


def _responses_error(lineno: int, body: dict[str, Any], custom_id: str) -> LineError | None:
    problem = responses_api.problem(body)
    if problem is None:
        return None
    rule = LineRule.UNSUPPORTED_FIELD if problem.kind == "unsupported" else LineRule.INVALID_BODY
    return LineError(lineno, rule, f"body.{problem.field}: {problem.message}", custom_id)


def _greedy_choices_error(lineno: int, body: dict[str, Any], custom_id: str) -> LineError | None:
    """Several choices at an explicit temperature 0: vLLM refuses them (greedy decoding gives
    one answer), so the line is refused up front rather than reaching the engine. An unset
    temperature is not greedy: OpenAI's default is 1."""
    n, temperature = body.get("n"), body.get("temperature")
    if isinstance(n, bool) or not isinstance(n, int) or n <= 1:
        return None
    if isinstance(temperature, bool) or not isinstance(temperature, int | float):
        return None
    if temperature >= GREEDY_TEMPERATURE:
        return None
    return LineError(
        lineno,
        LineRule.GREEDY_CHOICES,
        f"body.n is {n} with temperature {temperature}: vLLM cannot return several greedy "
        "choices (they would be identical); use n 1, or a temperature above 0",
        custom_id,
    )


def iter_validated(
    raw_lines: Iterable[bytes], validator: FileValidator | None = None
) -> Iterator[ValidLine | LineError]:
    """Validate raw lines in order (line numbers start at 1), skipping blank lines."""
    checker = validator or FileValidator()
    for lineno, raw in enumerate(raw_lines, start=1):
        result = checker.check(lineno, raw)
        if result is not None:
            yield result
