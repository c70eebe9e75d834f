"""`llmbatch gateway`: the OpenAI-compatible Files and Batches API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def gateway(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    config: Annotated[
        Path,
        typer.Option(
            "--config",
            exists=True,
            dir_okay=False,
            help="Gateway YAML: namespace, storage, models, prices, tiers.",
        ),
    ] = Path("/etc/llmbatch/gateway.yaml"),
) -> None:
    """Serve /v1/files and /v1/batches (OpenAI-compatible) over S3 and BatchJobs.

    Kubernetes access: KUBECONFIG or the in-cluster service account. API keys: `llmbatch keys`.
    """
    import uvicorn

    from llmbatch.gateway.config import load_config
    from llmbatch.gateway.server import build_app, configure_logging

    configure_logging()
    try:
        settings = load_config(config)
    except ValueError as exc:
        typer.echo(f"invalid gateway config {config}: {exc}", err=True)
        raise typer.Exit(2) from exc
    app = build_app(settings)
    uvicorn.run(
        app,
        host=host,
        port=port,
        access_log=False,
        log_config=None,
        proxy_headers=True,
        timeout_keep_alive=30,
    )
