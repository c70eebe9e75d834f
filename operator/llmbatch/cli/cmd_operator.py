"""`llmbatch operator` (owned by the operator work; replaced by the real command)."""

from __future__ import annotations

import typer


def operator() -> None:
    """Not built yet."""
    raise typer.Exit(2)
