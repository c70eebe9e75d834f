"""`llmbatch gateway` (owned by the gateway work; replaced by the real command)."""

from __future__ import annotations

import typer


def gateway() -> None:
    """Not built yet."""
    raise typer.Exit(2)
