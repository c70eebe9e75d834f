"""Run one action against a store the gateway keeps in a Secret (API keys, webhook endpoints):
connect, act, close, and turn API or input trouble into a one-line error and exit 1."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import typer


def run_on_store(namespace: str, make_store: Callable[[Any], Any], action: Any) -> Any:
    """``make_store(kube)`` builds the store over the gateway's client; ``action(store)`` is
    awaited and its result returned."""
    from llmbatch.gateway.kube import KubeClient
    from llmbatch.kube import KubeError

    async def main() -> Any:
        kube = KubeClient.from_environment(namespace)
        try:
            act: Callable[[Any], Awaitable[Any]] = action
            return await act(make_store(kube))
        finally:
            await kube.aclose()

    try:
        return asyncio.run(main())
    except (KubeError, ValueError, RuntimeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
