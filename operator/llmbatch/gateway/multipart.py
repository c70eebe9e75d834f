"""Streaming multipart/form-data parsing for uploads.

FastAPI's ``UploadFile`` spools the whole upload to a temporary file before the route runs;
here the request body is parsed as it arrives and the ``file`` part is handed on in blocks, so
an upload is validated and written to object storage while it is still being received.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from llmbatch.gateway.errors import bad_request

if TYPE_CHECKING:  # only declared for type checkers
    from python_multipart.multipart import MultipartCallbacks

FILE_FIELD = "file"
# Plain form fields (purpose, expires_after[...]) are tiny; refuse anything bigger.
_MAX_FIELD_BYTES = 64 * 1024


@dataclass
class _Part:
    headers: dict[str, str] = field(default_factory=dict)
    name: str = ""
    filename: str | None = None
    is_file: bool = False
    value: bytearray = field(default_factory=bytearray)


@dataclass
class FormResult:
    fields: dict[str, str]
    filename: str | None
    has_file: bool


class _State:
    def __init__(self) -> None:
        self.part = _Part()
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.has_file = False
        self.block = bytearray()
        self.error: str | None = None

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.part_begin,
            "on_header_field": lambda d, s, e: self.header_field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self.header_value.extend(d[s:e]),
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.part_data,
            "on_part_end": self.part_end,
        }

    def part_begin(self) -> None:
        self.part = _Part()

    def header_end(self) -> None:
        name = self.header_field.decode("latin-1").strip().lower()
        self.part.headers[name] = self.header_value.decode("utf-8", "replace").strip()
        self.header_field.clear()
        self.header_value.clear()

    def headers_finished(self) -> None:
        _, options = parse_options_header(self.part.headers.get("content-disposition", ""))
        self.part.name = options.get(b"name", b"").decode("utf-8", "replace")
        raw_filename = options.get(b"filename")
        self.part.filename = raw_filename.decode("utf-8", "replace") if raw_filename else None
        # Only the first "file" part is the upload; a repeated one is ignored.
        self.part.is_file = self.part.name == FILE_FIELD and not self.has_file
        if self.part.is_file:
            self.has_file = True
            self.filename = self.part.filename

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self.part.is_file:
            self.block.extend(data[start:end])
        elif self.part.name != FILE_FIELD:
            self.part.value.extend(data[start:end])
            if len(self.part.value) > _MAX_FIELD_BYTES:
                self.error = f"form field {self.part.name!r} is over {_MAX_FIELD_BYTES} bytes"

    def part_end(self) -> None:
        if not self.part.is_file and self.part.name and self.part.name != FILE_FIELD:
            self.fields[self.part.name] = self.part.value.decode("utf-8", "replace")


async def parse_upload(
    request: Request,
    on_file_block: Callable[[bytes], Awaitable[None]],
    block_size: int = 1024 * 1024,
) -> FormResult:
    """Parse the request body; the file part's bytes go to ``on_file_block`` in order."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise bad_request(
            "Uploads must be multipart/form-data with 'file' and 'purpose' fields.",
            code="invalid_content_type",
        )
    state = _State()
    parser = MultipartParser(boundary, state.callbacks())
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            if state.error:
                raise bad_request(state.error, code="invalid_multipart")
            if len(state.block) >= block_size:
                block = bytes(state.block)
                state.block.clear()
                await on_file_block(block)
        parser.finalize()
    except MultipartParseError as exc:
        raise bad_request(
            f"The multipart body could not be parsed: {exc}", code="invalid_multipart"
        ) from exc
    if state.block:
        block = bytes(state.block)
        state.block.clear()
        await on_file_block(block)
    return FormResult(fields=state.fields, filename=state.filename, has_file=state.has_file)
