"""`llmbatch keys` (owned by the gateway work; replaced by the real commands)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Gateway API keys.", no_args_is_help=True)
