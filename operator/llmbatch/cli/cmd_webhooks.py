"""`llmbatch webhooks add|list|remove`: the tenants' webhook endpoints for gateway batches,
kept with their signing secrets in a Kubernetes Secret the gateway reads."""

from __future__ import annotations

from typing import Annotated, Any

import typer

app = typer.Typer(
    help="Webhook endpoints per tenant: batch.completed, batch.failed, batch.expired and "
    "batch.cancelled events for the tenant's gateway batches, signed per Standard Webhooks.",
    no_args_is_help=True,
)

NamespaceOption = Annotated[
    str, typer.Option("--namespace", "-n", help="Namespace of the gateway.")
]
SecretOption = Annotated[
    str, typer.Option("--secret", help="Name of the webhooks Secret (gateway webhooks.secret).")
]
DEFAULT_SECRET = "llmbatch-gateway-webhooks"


def _run(namespace: str, secret: str, action: Any) -> Any:
    from llmbatch.cli.gateway_store import run_on_store
    from llmbatch.gateway.webhooks import WebhookStore

    return run_on_store(namespace, lambda kube: WebhookStore(kube, secret, cache_seconds=0), action)


@app.command()
def add(
    url: Annotated[str, typer.Argument(help="The receiver, https:// (or http://).")],
    tenant: Annotated[str, typer.Option(help="Tenant whose batches send events here.")],
    allow_private: Annotated[
        bool,
        typer.Option(
            "--allow-private",
            help="Accept a loopback, link-local or private target (the gateway must allow "
            "them too: webhooks.allowPrivateTargets).",
        ),
    ] = False,
    namespace: NamespaceOption = "default",
    secret: SecretOption = DEFAULT_SECRET,
) -> None:
    """Register an endpoint; its signing secret (whsec_...) is printed once, alone on the last
    line: give it to the receiver to verify the webhook-signature header."""
    endpoint = _run(namespace, secret, lambda s: s.add(tenant, url, allow_private=allow_private))
    typer.echo(
        f"endpoint id: {endpoint.id}  tenant: {endpoint.tenant}  url: {endpoint.url}", err=True
    )
    typer.echo(endpoint.secret)


@app.command("list")
def list_endpoints(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's endpoints.")] = None,
    namespace: NamespaceOption = "default",
    secret: SecretOption = DEFAULT_SECRET,
) -> None:
    """List endpoint ids with tenant, URL and creation time (never the secrets)."""
    endpoints = _run(namespace, secret, lambda s: s.list(tenant))
    typer.echo(f"{'ENDPOINT ID':<22}{'TENANT':<24}{'CREATED':<22}URL")
    for e in endpoints:
        typer.echo(f"{e.id:<22}{e.tenant:<24}{e.created_at:<22}{e.url}")


@app.command()
def remove(
    endpoint_id: Annotated[str, typer.Argument(help="The endpoint id shown by `webhooks list`.")],
    namespace: NamespaceOption = "default",
    secret: SecretOption = DEFAULT_SECRET,
) -> None:
    """Remove an endpoint; the gateway stops sending to it within a few seconds."""
    if not _run(namespace, secret, lambda s: s.remove(endpoint_id)):
        typer.echo(f"no webhook endpoint with id {endpoint_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"removed {endpoint_id}")
