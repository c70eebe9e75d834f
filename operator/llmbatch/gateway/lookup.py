"""Finding a tenant's batch or file by id. Anything that is missing, malformed, expired or
owned by another tenant gets the same 404, so ids cannot be probed across tenants."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from anyio import to_thread

from llmbatch.api.layout import ERRORS_FILE, OUTPUT_FILE
from llmbatch.gateway import expiry, ids
from llmbatch.gateway.batches import TENANT_LABEL, output_created_at
from llmbatch.gateway.errors import ApiError, not_found
from llmbatch.gateway.files import FileMeta
from llmbatch.gateway.state import Gateway
from llmbatch.kube import NotFound
from llmbatch.storage import join_uri


async def get_batchjob(
    gateway: Gateway, tenant: str, batch_id: str, param: str | None = None
) -> dict[str, Any]:
    if not ids.is_batch_id(batch_id):
        raise not_found("batch", batch_id, param)
    try:
        job = await gateway.jobs.get(ids.batch_name(batch_id))
    except NotFound:
        raise not_found("batch", batch_id, param) from None
    if (job.get("metadata", {}).get("labels") or {}).get(TENANT_LABEL) != tenant:
        raise not_found("batch", batch_id, param)
    return job


def result_uri(job: dict[str, Any], kind: str) -> str | None:
    """The URI of a finished batch's output.jsonl ("output") or errors.jsonl ("errors")."""
    status = job.get("status") or {}
    value = status.get("outputFile" if kind == "output" else "errorFile")
    if not value:
        return None
    text = str(value)
    if "://" in text or text.startswith("/"):
        return text
    return join_uri(job["spec"]["output"], text)


@dataclass
class FileView:
    meta: FileMeta
    content_uri: str


async def get_file(
    gateway: Gateway, tenant: str, file_id: str, param: str | None = None
) -> FileView:
    """An upload, or the output/error file of one of the tenant's batches."""
    ref = ids.parse_output_file_id(file_id)
    if ref is not None:
        try:
            job = await get_batchjob(gateway, tenant, ref.batch_id)
        except ApiError:
            raise not_found("file", file_id, param) from None
        uri = result_uri(job, ref.kind)
        if uri is None:
            raise not_found("file", file_id, param)
        info = await to_thread.run_sync(gateway.store.head, uri)
        if info is None:
            raise not_found("file", file_id, param)
        created = output_created_at(job)
        name = OUTPUT_FILE if ref.kind == "output" else ERRORS_FILE
        meta = FileMeta(
            id=file_id,
            filename=f"{ref.batch_id}_{name}",
            purpose="batch_output",
            bytes=info.size,
            created_at=created,
            expires_at=expiry.output_expires_at(job, created),
        )
        return _unexpired(gateway, FileView(meta, uri), param)
    if not ids.is_upload_id(file_id):
        raise not_found("file", file_id, param)
    found: FileMeta | None = await to_thread.run_sync(gateway.files.get_meta, tenant, file_id)
    if found is None:
        raise not_found("file", file_id, param)
    return _unexpired(gateway, FileView(found, gateway.files.content_uri(tenant, file_id)), param)


def _unexpired(gateway: Gateway, view: FileView, param: str | None) -> FileView:
    # Gone for the client from the moment it expires, whenever the sweeper deletes it.
    if expiry.is_expired(view.meta.expires_at, gateway.clock()):
        raise not_found("file", view.meta.id, param)
    return view
