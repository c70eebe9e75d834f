"""/v1/files: upload (streamed and validated), list, retrieve, content, delete."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import anyio
from anyio import to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from llmbatch.api.lines import Limits, LineError
from llmbatch.gateway import expiry, ids
from llmbatch.gateway.auth import PrincipalDep
from llmbatch.gateway.batches import BATCH_ID_LABEL, tenant_selector
from llmbatch.gateway.errors import ApiError, bad_request
from llmbatch.gateway.files import FileMeta, UploadOutcome, UploadSink
from llmbatch.gateway.lookup import FileView, get_file, result_uri
from llmbatch.gateway.multipart import parse_upload
from llmbatch.gateway.state import Gateway, GatewayDep

router = APIRouter()
_RESULT_KINDS: tuple[Literal["output"], Literal["errors"]] = ("output", "errors")

_STREAM_BLOCK = 1024 * 1024
# Metadata objects read at once when listing files.
_LIST_READS = 16
# Multipart framing around the file: boundaries, part headers, the purpose field.
_FORM_OVERHEAD = 64 * 1024


def file_limits(gateway: Gateway) -> Limits:
    limits = gateway.config.limits
    return Limits(max_lines=limits.max_requests, max_bytes=limits.max_file_bytes)


def too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        f"The file is larger than the limit of {limit} bytes; split it into "
        "several batches. Nothing was stored.",
        param="file",
        code="file_too_large",
    )


def line_errors_error(outcome: UploadOutcome) -> ApiError:
    def entry(err: LineError) -> dict[str, Any]:
        return {
            "line": err.line,
            "code": err.rule.value,
            "message": err.message,
            "custom_id": err.custom_id,
        }

    first = outcome.errors[0]
    more = outcome.error_count - 1
    suffix = f" (and {more} more invalid line{'s' if more != 1 else ''})" if more else ""
    return bad_request(
        f"The file is not a valid batch input: line {first.line}: {first.rule.value}: "
        f"{first.message}{suffix}. Nothing was stored.",
        param="file",
        code="invalid_file",
        extra={
            "line": first.line,
            "errors": [entry(e) for e in outcome.errors],
            "error_count": outcome.error_count,
        },
    )


def check_outcome(outcome: UploadOutcome, limit: int) -> None:
    if outcome.oversized:
        raise too_large(limit)
    if outcome.errors:
        raise line_errors_error(outcome)
    if outcome.requests == 0:
        raise bad_request("The file holds no requests.", param="file", code="empty_file")


async def store_upload(gateway: Gateway, tenant: str, filename: str, data: bytes) -> FileMeta:
    """Validate and store a file built by the gateway itself (inline batch input)."""
    file_id = ids.new_file_id(gateway.clock())
    limits = file_limits(gateway)
    sink = gateway.files.sink(tenant, file_id, limits, gateway.config.limits.max_reported_errors)

    def run() -> UploadOutcome:
        sink.open()
        try:
            sink.feed(data)
        except BaseException:
            sink.abort()
            raise
        return sink.finish()

    outcome = await to_thread.run_sync(run)
    check_outcome(outcome, limits.max_bytes)
    return await _save(gateway, tenant, file_id, filename, outcome)


async def _save(
    gateway: Gateway,
    tenant: str,
    file_id: str,
    filename: str,
    outcome: UploadOutcome,
    expires_after: int | None = None,
) -> FileMeta:
    created_at = int(gateway.clock())
    meta = FileMeta(
        id=file_id,
        filename=filename,
        purpose="batch",
        bytes=outcome.size,
        created_at=created_at,
        endpoint=outcome.endpoint,
        models=outcome.models,
        requests=outcome.requests,
        expires_at=created_at + expires_after if expires_after is not None else None,
    )
    await to_thread.run_sync(gateway.files.save_meta, tenant, meta)
    gateway.metrics.uploaded_bytes.inc(outcome.size)
    return meta


class _Feeder:
    """Hands blocks to the sink in a worker thread, one at a time and in order, so the next
    block is received while the last one is validated and written."""

    def __init__(self, sink: UploadSink) -> None:
        self.sink = sink
        self.task: asyncio.Task[None] | None = None

    async def push(self, block: bytes) -> None:
        await self.drain()
        self.task = asyncio.create_task(to_thread.run_sync(self.sink.feed, block))

    async def drain(self) -> None:
        if self.task is not None:
            task, self.task = self.task, None
            await task


@router.post("/files")
async def create_file(
    request: Request, gateway: GatewayDep, principal: PrincipalDep
) -> dict[str, Any]:
    limits = file_limits(gateway)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limits.max_bytes + _FORM_OVERHEAD:
        # Refuse before reading a byte: the client learns at once, nothing is stored.
        raise too_large(limits.max_bytes)
    file_id = ids.new_file_id(gateway.clock())
    sink: UploadSink = gateway.files.sink(
        principal.tenant, file_id, limits, gateway.config.limits.max_reported_errors
    )
    await to_thread.run_sync(sink.open)
    feeder = _Feeder(sink)
    try:

        async def on_block(block: bytes) -> None:
            await feeder.push(block)
            if sink.oversized and sink.size > 2 * limits.max_bytes:
                # A chunked upload far past the limit: stop reading it.
                raise too_large(limits.max_bytes)

        form = await parse_upload(request, on_block)
        await feeder.drain()
        purpose = form.fields.get("purpose")
        if purpose != "batch":
            raise bad_request(
                f"Invalid purpose {purpose!r}: this gateway accepts only purpose 'batch' "
                "(batch input files).",
                param="purpose",
                code="invalid_purpose",
            )
        if not form.has_file:
            raise bad_request("The upload has no 'file' part.", param="file", code="missing_file")
        try:
            expires_after = expiry.from_form(form.fields)
        except ValueError as exc:
            raise bad_request(
                str(exc), param="expires_after", code="invalid_expires_after"
            ) from None
    except BaseException:
        # Even when the client went away (cancellation): finish the block in flight, then
        # discard the partial object.
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(Exception):
                await feeder.drain()
            await to_thread.run_sync(sink.abort)
        raise
    outcome = await to_thread.run_sync(sink.finish)
    check_outcome(outcome, limits.max_bytes)
    filename = form.filename or "upload.jsonl"
    meta = await _save(gateway, principal.tenant, file_id, filename, outcome, expires_after)
    return meta.to_openai()


async def _output_file_ids(gateway: Gateway, tenant: str) -> list[str]:
    jobs = await gateway.jobs.list(tenant_selector(tenant))
    found = []
    for job in jobs:
        batch_id = (job["metadata"].get("labels") or {}).get(BATCH_ID_LABEL, "")
        if not ids.is_batch_id(batch_id):
            continue
        for kind in _RESULT_KINDS:
            if result_uri(job, kind) is not None:
                found.append(ids.output_file_id(batch_id, kind))
    return found


@router.get("/files")
async def list_files(
    gateway: GatewayDep,
    principal: PrincipalDep,
    purpose: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 10000,
    after: str | None = None,
    order: Literal["asc", "desc"] = "desc",
) -> dict[str, Any]:
    file_ids: list[str] = []
    if purpose in (None, "batch"):
        file_ids += await to_thread.run_sync(gateway.files.list_ids, principal.tenant)
    if purpose in (None, "batch_output"):
        file_ids += await _output_file_ids(gateway, principal.tenant)
    # Ids sort by creation time (an output file sorts with its batch).
    file_ids.sort(reverse=order == "desc")
    if after:
        file_ids = [f for f in file_ids if (f < after if order == "desc" else f > after)]
    gate = asyncio.Semaphore(_LIST_READS)

    async def describe(file_id: str) -> dict[str, Any] | None:
        async with gate:
            try:
                return (await get_file(gateway, principal.tenant, file_id)).meta.to_openai()
            except ApiError:
                return None  # deleted or unfinished since it was listed

    # One metadata read per file, several at a time; one more than the page tells has_more.
    page: list[dict[str, Any]] = []
    position = 0
    while len(page) <= limit and position < len(file_ids):
        wanted = file_ids[position : position + limit + 1 - len(page)]
        position += len(wanted)
        found = await asyncio.gather(*(describe(file_id) for file_id in wanted))
        page += [entry for entry in found if entry is not None]
    has_more = len(page) > limit
    page = page[:limit]
    return {
        "object": "list",
        "data": page,
        "has_more": has_more,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
    }


@router.get("/files/{file_id}")
async def retrieve_file(
    file_id: str, gateway: GatewayDep, principal: PrincipalDep
) -> dict[str, Any]:
    view = await get_file(gateway, principal.tenant, file_id)
    return view.meta.to_openai()


async def _stream(gateway: Gateway, view: FileView) -> AsyncIterator[bytes]:
    reader = await to_thread.run_sync(gateway.store.open_read, view.content_uri)
    try:
        while True:
            block = await to_thread.run_sync(reader.read, _STREAM_BLOCK)
            if not block:
                break
            yield block
    finally:
        await to_thread.run_sync(reader.close)


@router.get("/files/{file_id}/content")
async def file_content(
    file_id: str, gateway: GatewayDep, principal: PrincipalDep
) -> StreamingResponse:
    view = await get_file(gateway, principal.tenant, file_id)
    return StreamingResponse(
        _stream(gateway, view),
        media_type="application/jsonl",
        headers={
            "Content-Length": str(view.meta.bytes),
            "Content-Disposition": f'attachment; filename="{view.meta.filename}"',
        },
    )


@router.delete("/files/{file_id}")
async def delete_file(file_id: str, gateway: GatewayDep, principal: PrincipalDep) -> dict[str, Any]:
    view = await get_file(gateway, principal.tenant, file_id)
    if view.meta.purpose == "batch_output":
        raise bad_request(
            "A batch's output and error files are kept with the batch and cannot "
            "be deleted on their own.",
            param="file_id",
            code="file_not_deletable",
        )
    await to_thread.run_sync(gateway.files.delete, principal.tenant, file_id)
    return {"id": file_id, "object": "file", "deleted": True}
