"""`llmbatch run` (owned by the run work; replaced by the real command)."""

from __future__ import annotations

import typer


def run() -> None:
    """Not built yet."""
    raise typer.Exit(2)
