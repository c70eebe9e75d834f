"""`llmbatch operator`: the kopf operator that runs BatchJobs (same as
``kopf run -m llmbatch.controller`` with these settings)."""

from __future__ import annotations

from typing import Annotated

import typer


def operator(
    namespace: Annotated[
        list[str] | None,
        typer.Option("--namespace", "-n", help="Watch this namespace (repeat for several)."),
    ] = None,
    all_namespaces: Annotated[
        bool,
        typer.Option(
            "--all-namespaces",
            "-A",
            help="Watch every namespace (the default when "
            "no --namespace and no LLMBATCH_NAMESPACES is given).",
        ),
    ] = False,
    metrics_port: Annotated[
        int, typer.Option(envvar="LLMBATCH_METRICS_PORT", help="Prometheus /metrics port; 0 = off.")
    ] = 9090,
    liveness: Annotated[
        str,
        typer.Option(envvar="LLMBATCH_LIVENESS", help="Kopf liveness endpoint URL; empty = off."),
    ] = "http://0.0.0.0:8080/healthz",
    runner_image: Annotated[
        str | None,
        typer.Option(
            envvar="LLMBATCH_RUNNER_IMAGE",
            help="Runner image for BatchJobs without spec.runnerImage.",
        ),
    ] = None,
    default_s3_endpoint: Annotated[
        str | None,
        typer.Option(
            envvar="LLMBATCH_DEFAULT_S3_ENDPOINT",
            help="S3 endpoint for BatchJobs without spec.storage.endpoint.",
        ),
    ] = None,
    log_level: Annotated[
        str, typer.Option(envvar="LLMBATCH_LOG_LEVEL", help="DEBUG, INFO, WARNING or ERROR.")
    ] = "INFO",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Run the operator: BatchJobs become Indexed Jobs, their status follows the shards.

    Kubernetes access comes from the in-cluster service account or KUBECONFIG. SIGTERM
    stops it cleanly; a restart continues where it stopped (nothing is duplicated).
    """
    import dataclasses
    import logging

    import kopf

    import llmbatch.controller  # noqa: F401  (registers the handlers)
    from llmbatch.controller.config import ConfigError, OperatorConfig, set_active

    try:
        config = OperatorConfig.from_env()
    except ConfigError as exc:
        typer.echo(f"llmbatch operator: {exc}", err=True)
        raise typer.Exit(2) from None
    namespaces = tuple(namespace or ()) or config.namespaces
    if all_namespaces and namespace:
        typer.echo("use either --namespace or --all-namespaces", err=True)
        raise typer.Exit(2)
    config = dataclasses.replace(
        config,
        namespaces=() if all_namespaces else namespaces,
        metrics_port=metrics_port,
        liveness_endpoint=liveness or None,
        runner_image=runner_image or config.runner_image,
        default_s3_endpoint=default_s3_endpoint or config.default_s3_endpoint,
    )
    set_active(config)
    level = logging.DEBUG if verbose else getattr(logging, log_level.upper(), logging.INFO)
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Kopf's own chatter (every watch event) only with --verbose.
    logging.getLogger("kopf").setLevel(logging.DEBUG if verbose else logging.WARNING)
    kopf.run(
        standalone=True,
        clusterwide=not config.namespaces,
        namespaces=list(config.namespaces),
        liveness_endpoint=config.liveness_endpoint,
    )
