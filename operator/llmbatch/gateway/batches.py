"""Batches as BatchJobs: building the BatchJob for a new batch, and rendering a BatchJob as
OpenAI's Batch object. Pure functions, no I/O.

A batch ``batch_<suffix>`` is the BatchJob ``batch-<suffix>`` in the gateway's namespace,
labelled with its tenant and batch id; the input file id and the cancel request time are
annotations. The output prefix is per tenant and batch, next to the tenant's uploads.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from llmbatch.api.batchjob import BatchJobSpec, SecretRef, StorageSpec
from llmbatch.api.conditions import Reason
from llmbatch.api.durations import parse_duration
from llmbatch.api.gvk import API_VERSION, KIND, LABEL_PREFIX
from llmbatch.api.phases import Phase
from llmbatch.api.timefmt import parse_time
from llmbatch.gateway import ids
from llmbatch.gateway.config import GatewayConfig, ModelEntry
from llmbatch.gateway.expiry import OUTPUT_EXPIRES_ANNOTATION

TENANT_LABEL = f"{LABEL_PREFIX}/tenant"
BATCH_ID_LABEL = f"{LABEL_PREFIX}/batch-id"
MANAGED_LABEL = "app.kubernetes.io/managed-by"
INPUT_FILE_ANNOTATION = f"{LABEL_PREFIX}/input-file-id"
CANCEL_AT_ANNOTATION = f"{LABEL_PREFIX}/cancel-requested-at"

_STATUS_TIMESTAMPS = (
    "in_progress_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
)


def tenant_selector(tenant: str) -> str:
    return f"{TENANT_LABEL}={tenant},{MANAGED_LABEL}=llmbatch-gateway"


def build_batchjob(
    config: GatewayConfig,
    *,
    batch_id: str,
    tenant: str,
    input_file_id: str,
    input_uri: str,
    output_uri: str,
    model_name: str,
    model: ModelEntry,
    endpoint: str,
    completion_window: str,
    metadata: dict[str, str],
    output_expires_after: int | None = None,
) -> dict[str, Any]:
    """The BatchJob manifest; validated against the same models as the CRD."""
    storage = config.storage
    spec = BatchJobSpec.model_validate(
        {
            "model": model.model_spec(model_name),
            "input": input_uri,
            "output": output_uri,
            "endpoint": endpoint,
            "completion_window": completion_window,
            "parallelism": model.parallelism,
            "resources": model.resources,
            "node_selector": model.node_selector,
            "tolerations": model.tolerations,
            "priority_class_name": model.priority_class_name,
            "queue_name": model.queue_name,
            "runner_image": model.runner_image,
            "storage": StorageSpec(
                endpoint=storage.endpoint,
                region=storage.region,
                secret_ref=SecretRef(name=storage.secret_ref) if storage.secret_ref else None,
            ),
            "metadata": metadata,
            **({"max_retries": model.max_retries} if model.max_retries is not None else {}),
        }
    )
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": ids.batch_name(batch_id),
            "labels": {
                TENANT_LABEL: tenant,
                BATCH_ID_LABEL: batch_id,
                MANAGED_LABEL: "llmbatch-gateway",
            },
            "annotations": {
                INPUT_FILE_ANNOTATION: input_file_id,
                **(
                    {OUTPUT_EXPIRES_ANNOTATION: str(output_expires_after)}
                    if output_expires_after is not None
                    else {}
                ),
            },
        },
        "spec": spec.to_k8s(),
    }


def unix_time(value: Any) -> int | None:
    """Seconds since the epoch of an RFC 3339 status time (None when missing or unreadable)."""
    moment = parse_time(value)
    return int(moment.timestamp()) if moment is not None else None


def output_created_at(job: dict[str, Any]) -> int:
    """When a batch's output and error files were written: its completion time (the anchor of
    ``output_expires_after``), else its creation."""
    status = job.get("status") or {}
    stamps = status.get("timestamps") or {}
    return (
        unix_time(status.get("completionTime"))
        or unix_time(stamps.get("completedAt"))
        or unix_time(job.get("metadata", {}).get("creationTimestamp"))
        or 0
    )


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def phase_of(job: dict[str, Any]) -> Phase | None:
    """The BatchJob's phase, or None before the operator first wrote one."""
    name = (job.get("status") or {}).get("phase")
    try:
        return Phase(str(name)) if name else None
    except ValueError:
        return None


def batch_errors(status: dict[str, Any]) -> list[dict[str, Any]]:
    """OpenAI's ``errors.data``: the status's batch-level errors, else, for a batch whose
    validation failed, that failure (the operator says what to fix in the status message)."""
    errors = [
        {"code": e.get("code"), "message": e.get("message"), "param": None, "line": e.get("line")}
        for e in status.get("errors") or []
    ]
    if not errors and status.get("reason") == Reason.VALIDATION_FAILED:
        message = status.get("message") or "the batch failed validation"
        code = "validation_failed"
        errors.append({"code": code, "message": message, "param": None, "line": None})
    return errors


def openai_status(job: dict[str, Any]) -> str:
    spec = job.get("spec", {})
    phase = phase_of(job)
    if spec.get("cancel") and (phase is None or not phase.is_terminal()):
        # The cancel is recorded; the operator's phase catches up on its next pass.
        return "cancelling"
    return phase.openai_status() if phase is not None else "validating"


def to_openai(job: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's Batch object for a BatchJob (every field present, null when unknown)."""
    meta = job.get("metadata", {})
    spec = job.get("spec", {})
    status = job.get("status") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    batch_id = labels.get(BATCH_ID_LABEL, "")
    window = spec.get("completionWindow", "24h")
    stamps = status.get("timestamps") or {}
    created_at = unix_time(stamps.get("createdAt")) or unix_time(meta.get("creationTimestamp")) or 0
    expires_at = unix_time(status.get("deadline"))
    if expires_at is None and created_at:
        expires_at = created_at + int(parse_duration(window).total_seconds())

    times = {name: unix_time(stamps.get(_camel(name))) for name in _STATUS_TIMESTAMPS}
    state = openai_status(job)
    if state == "cancelling" and times["cancelling_at"] is None:
        times["cancelling_at"] = unix_time(annotations.get(CANCEL_AT_ANNOTATION))

    counts = status.get("requestCounts") or {}
    usage = status.get("usage") or {}
    prompt = int(usage.get("promptTokens", 0))
    completion = int(usage.get("completionTokens", 0))
    errors = batch_errors(status)
    output_file_id = error_file_id = None
    if batch_id and status.get("outputFile"):
        output_file_id = ids.output_file_id(batch_id, "output")
    if batch_id and status.get("errorFile") and int(counts.get("failed", 0)) > 0:
        error_file_id = ids.output_file_id(batch_id, "errors")
    return {
        "id": batch_id,
        "object": "batch",
        "endpoint": spec.get("endpoint", "/v1/chat/completions"),
        "model": (spec.get("model") or {}).get("name"),
        "errors": {"object": "list", "data": errors} if errors else None,
        "input_file_id": annotations.get(INPUT_FILE_ANNOTATION, ""),
        "completion_window": window,
        "status": state,
        "output_file_id": output_file_id,
        "error_file_id": error_file_id,
        "created_at": created_at,
        **times,
        "expires_at": expires_at,
        "request_counts": {
            "total": int(counts.get("total", 0)),
            "completed": int(counts.get("completed", 0)),
            "failed": int(counts.get("failed", 0)),
        },
        "usage": {
            "input_tokens": prompt,
            "output_tokens": completion,
            "total_tokens": prompt + completion,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
        "metadata": spec.get("metadata") or None,
    }


def check_completion_window(value: str, maximum: str) -> timedelta:
    """Parse ``24h``-style windows; longer than ``maximum`` is refused."""
    window = parse_duration(value)
    if window > parse_duration(maximum):
        raise ValueError(f"completion_window {value!r} is longer than the maximum {maximum}")
    return window


def check_metadata(metadata: dict[str, Any] | None) -> dict[str, str]:
    """OpenAI's limits: at most 16 pairs, keys up to 64 and values up to 512 characters."""
    if metadata is None:
        return {}
    if len(metadata) > 16:
        raise ValueError("metadata may hold at most 16 key-value pairs")
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise ValueError(f"metadata value for {key!r} must be a string")
        if len(key) > 64:
            raise ValueError(f"metadata key {key[:20]!r}... is longer than 64 characters")
        if len(value) > 512:
            raise ValueError(f"metadata value for {key!r} is longer than 512 characters")
    return dict(metadata)
