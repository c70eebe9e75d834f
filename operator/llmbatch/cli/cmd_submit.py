"""``llmbatch submit FILE``: validate a batch file, upload it to S3 and create its BatchJob
(or print the BatchJob with ``--dry-run``)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import typer

from llmbatch.cli.options import (
    FORMAT_OPTION,
    JSONL_FILE,
    KUBECONFIG_OPTION,
    OutputFormat,
    fail,
    print_json,
)

EPILOG = (
    "Examples:\n\n"
    "  llmbatch submit requests.jsonl -m qwen --model-source hf://Qwen/Qwen2.5-0.5B-Instruct"
    " --output s3://llmbatch/runs/first/ -p 2\n\n"
    "  llmbatch submit requests.jsonl -m qwen --model-source /models/qwen"
    " --output s3://llmbatch/runs/first/ --dry-run > batchjob.yaml\n\n"
    "--dry-run prints the BatchJob without uploading or creating anything.\n"
)

MANAGED_BY = "llmbatch-cli"


def batch_name(file: Path, digest: str) -> str:
    """A Kubernetes name from the file's stem and content: resubmitting the same file under
    the same name is caught by the API server (409) instead of running twice."""
    stem = re.sub(r"[^a-z0-9-]+", "-", file.stem.lower()).strip("-")[:40].strip("-") or "batch"
    return f"{stem}-{digest[:8]}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_batchjob(
    *,
    name: str,
    namespace: str | None,
    model: str,
    model_source: str,
    input_uri: str,
    output_uri: str,
    endpoint: str,
    parallelism: int,
    completion_window: str,
    secret: str | None,
    storage_endpoint: str | None,
    storage_region: str | None,
    input_sha256: str,
    engine_args: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The BatchJob object, checked against the API models (so a bad flag fails here, with
    the field named, rather than at the API server)."""
    from llmbatch.api.batchjob import BatchJobSpec
    from llmbatch.api.gvk import API_VERSION, KIND, LABEL_PREFIX

    spec = BatchJobSpec.model_validate(
        {
            "model": {"name": model, "source": model_source}
            | ({"engineArgs": engine_args} if engine_args else {}),
            "input": input_uri,
            "output": output_uri,
            "endpoint": endpoint,
            "parallelism": parallelism,
            "completionWindow": completion_window,
            "storage": {
                "endpoint": storage_endpoint,
                "region": storage_region,
                "secretRef": {"name": secret} if secret else None,
            },
        }
    )
    metadata: dict[str, Any] = {
        "name": name,
        "labels": {"app.kubernetes.io/managed-by": MANAGED_BY},
        "annotations": {f"{LABEL_PREFIX}/input-sha256": input_sha256},
    }
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata,
        # Only what the user chose: the operator and the CRD fill in the defaults.
        "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_unset=True),
    }


def submit(
    file: Path = JSONL_FILE,
    model: str = typer.Option(
        ..., "--model", "-m", help="Served model name; every line's body.model must equal it."
    ),
    model_source: str = typer.Option(
        ..., "--model-source", help="hf://org/name, s3://bucket/prefix or a path in the pod."
    ),
    output: str = typer.Option(
        ..., "--output", help="URI prefix for the results, e.g. s3://bucket/runs/first/."
    ),
    name: str | None = typer.Option(
        None, "--name", help="BatchJob name (default: file stem + content hash)."
    ),
    input_uri: str | None = typer.Option(
        None, "--input-uri", help="Where to upload the file (default: <output>/input.jsonl)."
    ),
    parallelism: int = typer.Option(
        1, "--parallelism", "-p", min=1, max=1000, help="Number of shards."
    ),
    completion_window: str = typer.Option(
        "24h", "--completion-window", help="Deadline after creation, e.g. 24h or 90m."
    ),
    namespace: str | None = typer.Option(
        None, "--namespace", "-n", help="Default: the kubeconfig context's."
    ),
    secret: str = typer.Option(
        "llmbatch-s3", "--secret", help="Secret with the pods' S3 credentials ('' for none)."
    ),
    s3_endpoint: str | None = typer.Option(
        None,
        "--s3-endpoint",
        envvar="AWS_ENDPOINT_URL",
        help="S3 endpoint this machine uploads to (MinIO, a port-forward).",
    ),
    storage_endpoint: str | None = typer.Option(
        None,
        "--storage-endpoint",
        help="S3 endpoint the pods use (spec.storage.endpoint); default: the operator's.",
    ),
    storage_region: str | None = typer.Option(
        None, "--storage-region", help="S3 region the pods use (spec.storage.region)."
    ),
    kubeconfig: Path | None = KUBECONFIG_OPTION,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the BatchJob; upload and create nothing."
    ),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Upload a batch file to S3 and create a BatchJob that runs it."""
    import yaml
    from pydantic import ValidationError

    from llmbatch.api import gvk
    from llmbatch.cli.cmd_validate import check_file

    report = check_file(file)
    if report.errors:
        first = report.errors[0]
        raise fail(
            f"{file}: {len(report.errors)} invalid line(s), first at line {first['line']}: "
            f"{first['rule']}: {first['message']} (see `llmbatch validate {file}`)"
        )
    if report.valid == 0:
        raise fail(f"{file} has no requests")
    others = {m: n for m, n in report.models.items() if m != model}
    if others:
        listed = ", ".join(f"{m} ({n})" for m, n in others.items())
        typer.echo(
            f"warning: lines for other models will fail with model_not_found: {listed}", err=True
        )

    from llmbatch.storage import StorageSettings, join_uri

    settings = StorageSettings.from_env()
    if s3_endpoint:
        settings = _with_endpoint(settings, s3_endpoint)
    digest = sha256_file(file)
    target = input_uri or join_uri(output, "input.jsonl")
    try:
        body = build_batchjob(
            name=name or batch_name(file, digest),
            namespace=namespace,
            model=model,
            model_source=model_source,
            input_uri=target,
            output_uri=output,
            endpoint=report.endpoint or "/v1/chat/completions",
            parallelism=parallelism,
            completion_window=completion_window,
            secret=secret or None,
            storage_endpoint=storage_endpoint,
            storage_region=storage_region,
            input_sha256=digest,
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise fail(f"invalid BatchJob: {problems}") from exc

    if dry_run:
        if output_format is OutputFormat.JSON:
            print_json(body)
        else:
            typer.echo(yaml.safe_dump(body, sort_keys=False), nl=False)
        return
    created = _upload_and_create(file, target, settings, body, namespace, kubeconfig)
    meta = created.get("metadata", {})
    if output_format is OutputFormat.JSON:
        print_json(
            {
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "input": target,
                "output": output,
                "inputSha256": digest,
            }
        )
    else:
        typer.echo(f"uploaded {file} ({report.valid} requests) to {target}")
        typer.echo(
            f"{gvk.SINGULAR}.{gvk.GROUP}/{meta.get('name')} created in {meta.get('namespace')}"
        )
        typer.echo(f"follow it with: llmbatch watch {meta.get('name')} -n {meta.get('namespace')}")


def _with_endpoint(settings: Any, endpoint: str) -> Any:
    import dataclasses

    return dataclasses.replace(settings, endpoint_url=endpoint)


def _upload_and_create(
    file: Path,
    target: str,
    settings: Any,
    body: dict[str, Any],
    namespace: str | None,
    kubeconfig: Path | None,
) -> dict[str, Any]:
    from llmbatch.cli.kube import BatchJobClient, KubeError
    from llmbatch.storage import StorageError, get_store

    try:
        client = BatchJobClient.connect(kubeconfig, namespace)
    except KubeError as exc:
        raise fail(str(exc)) from exc
    body["metadata"]["namespace"] = client.namespace
    try:
        # Fail before uploading when the name is taken: no orphan upload for a batch that
        # would never be created.
        client.get(body["metadata"]["name"])
        raise fail(
            f"BatchJob {client.namespace}/{body['metadata']['name']} already exists; "
            "pick another --name"
        )
    except KubeError as exc:
        if exc.status != 404:
            raise fail(str(exc)) from exc
    try:
        get_store(target, settings).upload_file(file, target)
    except StorageError as exc:
        raise fail(f"upload failed: {exc}") from exc
    try:
        return client.create(body)
    except KubeError as exc:
        raise fail(str(exc)) from exc
