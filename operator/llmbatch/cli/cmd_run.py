"""``llmbatch run``: a whole batch locally (plan + run + finalize), no cluster needed."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def run(
    input_uri: Annotated[
        str, typer.Argument(metavar="INPUT", help="Batch JSONL: s3://, file:// or a path.")
    ],
    output: Annotated[str, typer.Option("--output", "-o", help="Output URI prefix.")],
    model: Annotated[
        str, typer.Option("--model", "-m", help="hf://org/name, s3://bucket/prefix or a path.")
    ],
    served_model_name: Annotated[
        str | None,
        typer.Option(
            help="Name the lines use as body.model (default: the model's last path part)."
        ),
    ] = None,
    endpoint: Annotated[
        str,
        typer.Option(
            help="/v1/chat/completions, /v1/completions, /v1/embeddings or /v1/responses."
        ),
    ] = "/v1/chat/completions",
    engine_args: Annotated[str | None, typer.Option(help="vLLM engine arguments as JSON.")] = None,
    chunk_lines: Annotated[
        int, typer.Option(help="Lines per chunk: the unit a shard commits and resumes.")
    ] = 1000,
) -> None:
    """Plan and run a batch on this machine with vLLM and write output.jsonl, errors.jsonl,
    manifest.json (the same files as on a cluster)."""
    from rich.console import Console
    from rich.table import Table

    from llmbatch.api.documents import Manifest
    from llmbatch.api.exitcodes import ExitCode
    from llmbatch.api.lines import Endpoint
    from llmbatch.runner.cli import parse_engine_args
    from llmbatch.runner.errors import PermanentError
    from llmbatch.runner.local import run_local
    from llmbatch.storage import StorageSettings

    console = Console(stderr=True)
    try:
        outcome = run_local(
            input_uri,
            output,
            model,
            served_model_name,
            Endpoint(endpoint),
            parse_engine_args(engine_args),
            StorageSettings.from_env(),
            plan_options={"chunk_lines": chunk_lines},
        )
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(int(ExitCode.PERMANENT)) from exc
    except PermanentError as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(int(ExitCode.PERMANENT)) from exc
    manifest = Manifest.model_validate(outcome)
    counts, usage = manifest.request_counts, manifest.usage
    table = Table(title="llmbatch run", show_header=False)
    table.add_row("requests", str(counts.total))
    table.add_row("completed", str(counts.completed))
    table.add_row("failed", str(counts.failed))
    table.add_row("prompt tokens", str(usage.prompt_tokens))
    table.add_row("completion tokens", str(usage.completion_tokens))
    table.add_row("output", str(manifest.output_file))
    table.add_row("errors", str(manifest.error_file))
    console.print(table)
    typer.echo(json.dumps({"requestCounts": counts.to_dict(), "usage": usage.to_dict()}))
    raise typer.Exit(int(outcome.get("exitCode", 0)))
