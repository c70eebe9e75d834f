"""Options and output conventions shared by the user-facing commands: ``-o text`` for people
(rich) and ``-o json`` for scripts (one JSON document on stdout, nothing else).

Options are module-level singletons so every command spells them the same way."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import Any

import typer


class OutputFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


FORMAT_OPTION: Any = typer.Option(
    OutputFormat.TEXT, "-o", "--output-format", help="text for people, json for scripts."
)


JSONL_FILE: Any = typer.Argument(
    ..., exists=True, dir_okay=False, readable=True, help="OpenAI batch input file (JSONL)."
)
NAMESPACE_OPTION: Any = typer.Option(
    None, "--namespace", "-n", help="Default: the kubeconfig context's."
)
KUBECONFIG_OPTION: Any = typer.Option(None, "--kubeconfig", help="Default: $KUBECONFIG.")


def print_json(data: Any) -> None:
    """One indented JSON document on stdout (dates and paths as strings)."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an error on stderr and return the Exit to raise (``raise fail(...)``)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)
