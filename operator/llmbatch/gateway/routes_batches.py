"""/v1/batches: create (from a file or inline input), retrieve, list, cancel, results."""

from __future__ import annotations

import json
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from llmbatch.api.lines import Endpoint, is_unservable, served_endpoints
from llmbatch.api.timefmt import rfc3339
from llmbatch.gateway import batches, expiry, ids, inline
from llmbatch.gateway.auth import PrincipalDep
from llmbatch.gateway.config import ModelEntry
from llmbatch.gateway.errors import ApiError, bad_request
from llmbatch.gateway.files import FileMeta
from llmbatch.gateway.lookup import get_batchjob, get_file, result_uri
from llmbatch.gateway.routes_files import store_upload
from llmbatch.gateway.state import Gateway, GatewayDep
from llmbatch.kube import Conflict

router = APIRouter()


class CreateBatch(BaseModel):
    # OpenAI's fields, plus ``input``/``model`` for inline batches. Unknown fields a newer SDK
    # may send are accepted and ignored.
    model_config = ConfigDict(extra="ignore")

    input_file_id: str | None = None
    endpoint: str | None = None
    completion_window: str = "24h"
    metadata: dict[str, Any] | None = None
    output_expires_after: Any = None
    input: list[Any] | None = None
    model: str | None = None


def check_endpoint(value: str | None, default: str | None = None) -> str:
    endpoint = value or default or Endpoint.CHAT_COMPLETIONS.value
    if endpoint not in {e.value for e in Endpoint}:
        why = " is an OpenAI endpoint vLLM cannot serve" if is_unservable(endpoint) else ""
        raise bad_request(
            f"Unsupported endpoint {endpoint!r}{why}: this gateway serves {served_endpoints()}.",
            param="endpoint",
            code="unsupported_endpoint",
        )
    return endpoint


def resolve_model(gateway: Gateway, meta: FileMeta) -> tuple[str, ModelEntry]:
    if len(meta.models) != 1:
        raise bad_request(
            f"Every request of a batch must use the same model; the file uses "
            f"{', '.join(repr(m) for m in meta.models)}.",
            param="input_file_id",
            code="mixed_models",
        )
    name = meta.models[0]
    entry = gateway.config.models.get(name)
    if entry is None:
        served = ", ".join(sorted(gateway.config.models)) or "none"
        raise bad_request(
            f"The model {name!r} does not exist on this gateway (served: {served}).",
            param="model",
            code="model_not_found",
        )
    return name, entry


@router.post("/batches")
async def create_batch(
    request: CreateBatch, gateway: GatewayDep, principal: PrincipalDep
) -> dict[str, Any]:
    config = gateway.config
    try:
        batches.check_completion_window(request.completion_window, config.max_completion_window)
    except ValueError as exc:
        raise bad_request(
            str(exc), param="completion_window", code="invalid_completion_window"
        ) from None
    try:
        metadata = batches.check_metadata(request.metadata)
    except ValueError as exc:
        raise bad_request(str(exc), param="metadata", code="invalid_metadata") from None
    try:
        output_expires_after = expiry.from_body(request.output_expires_after)
    except ValueError as exc:
        raise bad_request(
            str(exc), param="output_expires_after", code="invalid_expires_after"
        ) from None

    if request.input is not None:
        if request.input_file_id:
            raise bad_request("Give either input_file_id or input, not both.", param="input")
        endpoint = check_endpoint(request.endpoint)
        if request.model is not None and request.model not in config.models:
            raise bad_request(
                f"The model {request.model!r} does not exist on this gateway.",
                param="model",
                code="model_not_found",
            )
        lines = inline.to_lines(request.input, request.model, endpoint)
        data = inline.to_jsonl(lines)
        if len(data) > config.limits.max_file_bytes:
            raise ApiError(
                413,
                f"The inline input is larger than {config.limits.max_file_bytes} bytes.",
                param="input",
                code="file_too_large",
            )
        meta = await store_upload(gateway, principal.tenant, "inline.jsonl", data)
    elif request.input_file_id:
        view = await get_file(
            gateway, principal.tenant, request.input_file_id, param="input_file_id"
        )
        meta = view.meta
        if meta.purpose != "batch":
            raise bad_request(
                f"File {meta.id} has purpose {meta.purpose!r}; a batch needs a "
                "file uploaded with purpose 'batch'.",
                param="input_file_id",
                code="invalid_purpose",
            )
        endpoint = check_endpoint(request.endpoint, meta.endpoint)
    else:
        raise bad_request(
            "input_file_id is required.", param="input_file_id", code="missing_required_parameter"
        )

    if meta.endpoint and meta.endpoint != endpoint:
        raise bad_request(
            f"The batch endpoint is {endpoint} but the file's requests use {meta.endpoint}.",
            param="endpoint",
            code="endpoint_mismatch",
        )
    model_name, model = resolve_model(gateway, meta)
    batch_id = ids.new_batch_id(gateway.clock())
    manifest = batches.build_batchjob(
        config,
        batch_id=batch_id,
        tenant=principal.tenant,
        input_file_id=meta.id,
        input_uri=gateway.files.content_uri(principal.tenant, meta.id),
        output_uri=gateway.files.batch_output_prefix(principal.tenant, batch_id).rstrip("/"),
        model_name=model_name,
        model=model,
        endpoint=endpoint,
        completion_window=request.completion_window,
        metadata=metadata,
        output_expires_after=output_expires_after,
    )
    created = gateway.jobs.remember(await gateway.kube.create_batchjob(manifest))
    return batches.to_openai(created)


@router.get("/batches/{batch_id}")
async def retrieve_batch(
    batch_id: str, gateway: GatewayDep, principal: PrincipalDep
) -> dict[str, Any]:
    return batches.to_openai(await get_batchjob(gateway, principal.tenant, batch_id))


@router.get("/batches")
async def list_batches(
    gateway: GatewayDep,
    principal: PrincipalDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    jobs = await gateway.jobs.list(batches.tenant_selector(principal.tenant))
    keyed = []
    for job in jobs:
        batch_id = (job["metadata"].get("labels") or {}).get(batches.BATCH_ID_LABEL, "")
        if ids.is_batch_id(batch_id) and (after is None or batch_id < after):
            keyed.append((batch_id, job))
    # Newest first; ids sort by creation time, so "after" is a stable cursor.
    keyed.sort(key=lambda pair: pair[0], reverse=True)
    page = [batches.to_openai(job) for _, job in keyed[:limit]]
    return {
        "object": "list",
        "data": page,
        "has_more": len(keyed) > limit,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
    }


@router.post("/batches/{batch_id}/cancel")
async def cancel_batch(
    batch_id: str, gateway: GatewayDep, principal: PrincipalDep
) -> dict[str, Any]:
    job = await get_batchjob(gateway, principal.tenant, batch_id)
    phase = batches.phase_of(job)
    if phase is not None and phase.is_terminal():
        status = phase.openai_status()
        raise ApiError(
            409,
            f"Batch {batch_id} is already {status} and cannot be cancelled.",
            code="batch_not_cancellable",
        )
    if job["spec"].get("cancel"):
        return batches.to_openai(job)
    now = rfc3339(gateway.clock())
    try:
        patched = await gateway.kube.patch_batchjob(
            job["metadata"]["name"],
            {
                "metadata": {"annotations": {batches.CANCEL_AT_ANNOTATION: now}},
                "spec": {"cancel": True},
            },
        )
        gateway.jobs.remember(patched)
    except Conflict as exc:
        raise ApiError(
            409, f"Batch {batch_id} changed while cancelling; retry.", code="conflict"
        ) from exc
    return batches.to_openai(patched)


def _read_results(
    gateway: Gateway, job: dict[str, Any], after: int, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """One page of input lines after line ``after``, each with its output or error line.
    Streams the files; memory holds one page."""
    page: list[dict[str, Any]] = []
    has_more = False
    for lineno, raw in enumerate(gateway.store.read_lines(job["spec"]["input"]), start=1):
        if lineno <= after or not raw.strip():
            continue
        if len(page) == limit:
            has_more = True
            break
        try:
            request = json.loads(raw)
        except ValueError:
            request = None
        custom_id = request.get("custom_id") if isinstance(request, dict) else None
        page.append(
            {
                "object": "batch.result",
                "line": lineno,
                "custom_id": custom_id,
                "request": request.get("body") if isinstance(request, dict) else None,
                "response": None,
                "error": None,
            }
        )
    wanted = {entry["custom_id"]: entry for entry in page if entry["custom_id"] is not None}
    for kind in ("output", "errors"):
        uri = result_uri(job, kind)
        if uri is None or not wanted or not gateway.store.exists(uri):
            continue
        for raw in gateway.store.read_lines(uri):
            if not raw.strip():
                continue
            line = json.loads(raw)
            entry = wanted.get(line.get("custom_id"))
            if entry is not None:
                entry["response"] = line.get("response")
                entry["error"] = line.get("error")
    return page, has_more


@router.get("/batches/{batch_id}/results")
async def batch_results(
    batch_id: str,
    gateway: GatewayDep,
    principal: PrincipalDep,
    after: Annotated[int, Query(ge=0, description="Line cursor: a page's last_id.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> dict[str, Any]:
    job = await get_batchjob(gateway, principal.tenant, batch_id)
    page, has_more = await to_thread.run_sync(_read_results, gateway, job, after, limit)
    return {
        "object": "list",
        "data": page,
        "has_more": has_more,
        "first_id": str(page[0]["line"]) if page else None,
        "last_id": str(page[-1]["line"]) if page else None,
    }
