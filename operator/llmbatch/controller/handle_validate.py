"""Validating: the checks that need I/O. The storage Secret must exist (it is read only for
the head call's credentials), the input object must exist, not be empty, and be within the
size limit if the operator sets one (by default none: the plan step streams any size)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from llmbatch.api.batchjob import BatchJobSpec
from llmbatch.controller.config import OperatorConfig
from llmbatch.controller.kube import KubeApi, KubeError
from llmbatch.controller.objects import secret_credentials, storage_settings
from llmbatch.controller.validation import ValidationResult
from llmbatch.storage import AccessDenied, BucketNotFound, StorageError, get_store


async def load_secret(
    api: KubeApi, namespace: str, spec: BatchJobSpec
) -> tuple[dict[str, Any] | None, ValidationResult | None]:
    """The storage Secret, or the result that explains why it cannot be used."""
    if spec.storage.secret_ref is None:
        return None, None
    name = spec.storage.secret_ref.name
    try:
        secret = await api.get_secret(namespace, name)
    except KubeError as exc:
        return None, ValidationResult.retry(f"cannot read Secret {namespace}/{name}: {exc}")
    if secret is None:
        return None, ValidationResult.failed(
            f"spec.storage.secretRef: Secret {namespace}/{name} does not exist; create it with "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or fix the name"
        )
    access_key, secret_key = secret_credentials(secret)
    missing = [
        key
        for key, value in (("AWS_ACCESS_KEY_ID", access_key), ("AWS_SECRET_ACCESS_KEY", secret_key))
        if not value
    ]
    if missing:
        return None, ValidationResult.failed(
            f"spec.storage.secretRef: Secret {namespace}/{name} has no {' or '.join(missing)}; "
            "add the missing key(s)"
        )
    return secret, None


def _head_input(
    spec: BatchJobSpec, config: OperatorConfig, secret: Mapping[str, Any] | None
) -> ValidationResult:
    settings = storage_settings(spec, config, secret)
    uri = spec.input
    try:
        info = get_store(uri, settings).head(uri)
    except BucketNotFound:
        return ValidationResult.failed(
            f"spec.input: the bucket of {uri} does not exist; create it or fix the URI"
        )
    except AccessDenied:
        where = (
            f"Secret {spec.storage.secret_ref.name}" if spec.storage.secret_ref else "the operator"
        )
        return ValidationResult.failed(
            f"spec.input: the credentials of {where} may not read {uri}; grant s3:GetObject "
            "or use another Secret"
        )
    except StorageError as exc:
        return ValidationResult.retry(f"cannot reach object storage for {uri}: {exc}")
    if info is None:
        return ValidationResult.failed(
            f"spec.input: {uri} does not exist; upload the JSONL file or fix the URI"
        )
    if info.size == 0:
        return ValidationResult.failed(f"spec.input: {uri} is empty; it needs at least one request")
    if config.max_input_bytes and info.size > config.max_input_bytes:
        return ValidationResult.failed(
            f"spec.input: {uri} is {info.size} bytes, over the {config.max_input_bytes}-byte "
            "limit; split it into several BatchJobs"
        )
    return ValidationResult.passed(input_size=info.size)


async def validate(
    api: KubeApi, namespace: str, spec: BatchJobSpec, config: OperatorConfig
) -> tuple[ValidationResult, dict[str, Any] | None]:
    """The result, and the Secret for the later progress reads (kept in memory only)."""
    secret, problem = await load_secret(api, namespace, spec)
    if problem is not None:
        return problem, None
    if not spec.input.startswith("s3://"):
        # A file:// or path input lives on a volume of the pods, not of the operator.
        return ValidationResult.passed(), secret
    result = await asyncio.get_running_loop().run_in_executor(
        None, _head_input, spec, config, secret
    )
    return result, secret
