"""`llmbatch sandbox` (owned by the sandbox work; replaced by the real command)."""

from __future__ import annotations

import typer


def sandbox() -> None:
    """Not built yet."""
    raise typer.Exit(2)
