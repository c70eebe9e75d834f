"""`llmbatch keys create|list|revoke`: the gateway's API keys, kept hashed in a Secret."""

from __future__ import annotations

from typing import Annotated, Any

import typer

app = typer.Typer(
    help="Gateway API keys (stored hashed in a Kubernetes Secret).", no_args_is_help=True
)

NamespaceOption = Annotated[
    str, typer.Option("--namespace", "-n", help="Namespace of the gateway.")
]
SecretOption = Annotated[str, typer.Option("--secret", help="Name of the keys Secret.")]


def _run(namespace: str, secret: str, action: Any) -> Any:
    from llmbatch.cli.gateway_store import run_on_store
    from llmbatch.gateway.keys import KeyStore

    return run_on_store(namespace, lambda kube: KeyStore(kube, secret, cache_seconds=0), action)


@app.command()
def create(
    tenant: Annotated[str, typer.Option(help="Tenant the key acts for (a DNS label).")],
    tier: Annotated[
        str,
        typer.Option(
            help="Rate-limit tier: free, basic, premium, "
            "enterprise, or one from the gateway config."
        ),
    ],
    namespace: NamespaceOption = "default",
    secret: SecretOption = "llmbatch-gateway-keys",
) -> None:
    """Create a key; it is printed once, alone on the last line, and never stored."""
    record, key = _run(namespace, secret, lambda store: store.create(tenant, tier))
    typer.echo(f"key id: {record.key_id}  tenant: {record.tenant}  tier: {record.tier}", err=True)
    typer.echo(key)


@app.command("list")
def list_keys(
    namespace: NamespaceOption = "default", secret: SecretOption = "llmbatch-gateway-keys"
) -> None:
    """List key ids with tenant, tier and creation time (never the keys)."""
    records = _run(namespace, secret, lambda store: store.list())
    typer.echo(f"{'KEY ID':<14}{'TENANT':<24}{'TIER':<12}CREATED")
    for record in records:
        typer.echo(f"{record.key_id:<14}{record.tenant:<24}{record.tier:<12}{record.created_at}")


@app.command()
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key id shown by `keys list`.")],
    namespace: NamespaceOption = "default",
    secret: SecretOption = "llmbatch-gateway-keys",
) -> None:
    """Revoke a key; every gateway replica refuses it within its key cache time (1 s)."""
    found = _run(namespace, secret, lambda store: store.revoke(key_id))
    if not found:
        typer.echo(f"no key with id {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}")
