"""``llmbatch validate FILE``: check an OpenAI batch JSONL locally, with the same rules (and
the same line numbers and reasons) the runner and the gateway apply."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from llmbatch.cli.options import FORMAT_OPTION, JSONL_FILE, OutputFormat, print_json

EPILOG = """\
Examples:

  llmbatch validate requests.jsonl

  llmbatch validate requests.jsonl --endpoint /v1/chat/completions --max-lines 10000 -o json
"""


@dataclass
class FileReport:
    """What validating one file found; valid lines are counted, not kept."""

    path: str
    valid: int = 0
    blank: int = 0
    endpoint: str | None = None
    models: Counter[str] = field(default_factory=Counter)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.path,
            "valid": self.valid,
            "invalid": len(self.errors),
            "endpoint": self.endpoint,
            "models": dict(self.models),
            "errors": self.errors,
        }


def check_file(path: Path, endpoint: str | None = None, max_lines: int | None = None) -> FileReport:
    """Validate a local JSONL file line by line (bounded memory: one line at a time)."""
    from llmbatch.api.lines import Endpoint, FileValidator, Limits, LineError

    limits = Limits(max_lines=max_lines) if max_lines is not None else Limits()
    validator = FileValidator(endpoint=Endpoint(endpoint) if endpoint else None, limits=limits)
    report = FileReport(str(path))
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            result = validator.check(lineno, raw)
            if result is None:
                report.blank += 1
            elif isinstance(result, LineError):
                report.errors.append(
                    {
                        "line": result.line,
                        "rule": result.rule.value,
                        "message": result.message,
                        "customId": result.custom_id,
                    }
                )
            else:
                report.valid += 1
                report.models[str(result.request.body.get("model"))] += 1
    report.endpoint = validator.endpoint.value if validator.endpoint else None
    return report


def validate(
    file: Path = JSONL_FILE,
    endpoint: str | None = typer.Option(
        None,
        "--endpoint",
        "-e",
        help="The url every line must use (/v1/chat/completions, /v1/completions, "
        "/v1/embeddings); default: the first valid line's.",
    ),
    max_lines: int | None = typer.Option(
        None, "--max-lines", min=1, help="Reject files with more requests (default 50000)."
    ),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Check a batch input file locally: every bad line with its line number and the rule it
    breaks. Exits 1 if any line is invalid."""
    from llmbatch.api.lines import Endpoint

    if endpoint is not None and endpoint not in {e.value for e in Endpoint}:
        allowed = ", ".join(e.value for e in Endpoint)
        raise typer.BadParameter(f"{endpoint!r} is not one of {allowed}", param_hint="--endpoint")
    report = check_file(file, endpoint, max_lines)
    if output_format is OutputFormat.JSON:
        print_json(report.as_dict())
    else:
        _print_text(report)
    if report.errors:
        raise typer.Exit(1)


def _print_text(report: FileReport) -> None:
    for error in report.errors:
        where = f" (custom_id {error['customId']!r})" if error["customId"] else ""
        typer.echo(f"{report.path}:{error['line']}: {error['rule']}: {error['message']}{where}")
    models = ", ".join(f"{name} ({count})" for name, count in report.models.most_common())
    summary = f"{report.valid} valid, {len(report.errors)} invalid"
    if report.endpoint:
        summary += f"; endpoint {report.endpoint}"
    if models:
        summary += f"; models: {models}"
    typer.echo(summary, err=bool(report.errors))
