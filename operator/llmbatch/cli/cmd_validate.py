"""``llmbatch validate FILE``: check an OpenAI batch JSONL locally, with the same rules (and
the same line numbers and reasons) the runner and the gateway apply.

Any size: the file is read one line at a time, duplicate custom_ids are found with the plan
step's disk-backed index, and errors are printed as they are found (in JSON, spilled to a
scratch file until the document is written), so memory does not grow with the file. No line
cap unless --max-lines sets one (the gateway keeps OpenAI's upload limits).

Naming the model (``--model-source``, ``--batchjob`` or ``--config --model``) also counts the
valid lines' prompt tokens with its tokenizer, as ``llmbatch estimate`` does.
"""

from __future__ import annotations

import json
import sys
import tempfile
import textwrap
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import typer

from llmbatch.cli.model_choice import (
    BATCHJOB_OPTION,
    CONFIG_OPTION,
    MODEL_OPTION,
    MODEL_SOURCE_OPTION,
    choose_model,
    load_counter,
)
from llmbatch.cli.options import FORMAT_OPTION, JSONL_FILE, OutputFormat

if TYPE_CHECKING:
    from llmbatch.api.tokens import PromptCounter

EPILOG = """\
Examples:

  llmbatch validate requests.jsonl

  llmbatch validate requests.jsonl --endpoint /v1/chat/completions --max-lines 10000 -o json
"""


ErrorHandler = Callable[[dict[str, Any]], None]


@dataclass
class FileReport:
    """What validating one file found; valid lines are counted, not kept, and errors are kept
    only when no handler takes them."""

    path: str
    valid: int = 0
    blank: int = 0
    invalid: int = 0
    endpoint: str | None = None
    models: Counter[str] = field(default_factory=Counter)
    errors: list[dict[str, Any]] = field(default_factory=list)
    # Prompt tokens of the valid lines, and how they were counted, when a model was named.
    prompt_tokens: int | None = None
    token_method: str | None = None

    def as_dict(self) -> dict[str, Any]:
        counted = {"promptTokens": self.prompt_tokens, "promptTokenMethod": self.token_method}
        return {
            "file": self.path,
            "valid": self.valid,
            "invalid": self.invalid,
            "endpoint": self.endpoint,
            "models": dict(self.models),
            **(counted if self.prompt_tokens is not None else {}),
            "errors": self.errors,
        }


def check_file(
    path: Path,
    endpoint: str | None = None,
    max_lines: int | None = None,
    on_error: ErrorHandler | None = None,
    counter: PromptCounter | None = None,
) -> FileReport:
    """Validate a local JSONL file line by line. Memory stays bounded (one line at a time, the
    custom_ids on disk) when ``on_error`` takes the errors instead of the report."""
    from llmbatch.api.lines import Endpoint, FileValidator, Limits, LineError
    from llmbatch.runner.plan.dupindex import DiskIdSet
    from llmbatch.runner.plan.step import NO_FILE_LIMITS

    limits = NO_FILE_LIMITS if max_lines is None else Limits(max_lines, NO_FILE_LIMITS.max_bytes)
    report = FileReport(str(path), prompt_tokens=None if counter is None else 0)
    handle_error = on_error or report.errors.append
    with (
        tempfile.TemporaryDirectory(prefix="llmbatch-validate-") as work,
        DiskIdSet(Path(work)) as seen,
        path.open("rb") as handle,
    ):
        validator = FileValidator(
            endpoint=Endpoint(endpoint) if endpoint else None, limits=limits, seen_ids=seen
        )
        for lineno, raw in enumerate(handle, start=1):
            result = validator.check(lineno, raw)
            if result is None:
                report.blank += 1
            elif isinstance(result, LineError):
                report.invalid += 1
                handle_error(
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
                if counter is not None and report.prompt_tokens is not None:
                    url = result.request.url.value
                    report.prompt_tokens += counter.count(result.request.body, url)
    report.endpoint = validator.endpoint.value if validator.endpoint else None
    return report


def validate(
    file: Path = JSONL_FILE,
    endpoint: str | None = typer.Option(
        None,
        "--endpoint",
        "-e",
        help="The url every line must use (/v1/chat/completions, /v1/completions, "
        "/v1/embeddings, /v1/responses); default: the first valid line's.",
    ),
    max_lines: int | None = typer.Option(
        None, "--max-lines", min=1, help="Reject files with more requests (default: no limit)."
    ),
    model_source: str | None = MODEL_SOURCE_OPTION,
    batchjob: Path | None = BATCHJOB_OPTION,
    config: Path | None = CONFIG_OPTION,
    model: str | None = MODEL_OPTION,
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Check a batch input file locally: every bad line with its line number and the rule it
    breaks; with a model named, the valid lines' prompt tokens too. Exits 1 if any line is
    invalid."""
    from llmbatch.api.lines import Endpoint

    if endpoint is not None and endpoint not in {e.value for e in Endpoint}:
        allowed = ", ".join(e.value for e in Endpoint)
        raise typer.BadParameter(f"{endpoint!r} is not one of {allowed}", param_hint="--endpoint")
    choice = choose_model(model_source, batchjob, config, model)
    counter, method = load_counter(choice) if choice else (None, None)
    if output_format is OutputFormat.JSON:
        with _spilled_errors() as (spill, write_error):
            report = check_file(file, endpoint, max_lines, write_error, counter)
            report.token_method = method
            _print_json(report, spill)
    else:
        print_error = partial(_print_error, str(file))
        report = check_file(file, endpoint, max_lines, print_error, counter)
        report.token_method = method
        _print_summary(report)
    if report.invalid:
        raise typer.Exit(1)


@contextmanager
def _spilled_errors() -> Iterator[tuple[IO[str], ErrorHandler]]:
    """A scratch file taking errors as JSON lines, and the handler that writes them."""
    with tempfile.TemporaryFile("w+", encoding="utf-8") as spill:

        def write_error(error: dict[str, Any]) -> None:
            spill.write(json.dumps(error, default=str) + "\n")

        yield spill, write_error


def _print_json(report: FileReport, spill: IO[str]) -> None:
    """The report as print_json writes it (indent 2, errors last), errors streamed from the
    spill file."""
    head = json.dumps(report.as_dict(), indent=2, default=str)
    spill.seek(0)
    first = spill.readline()
    if not first:
        sys.stdout.write(head + "\n")
        return
    assert head.endswith('"errors": []\n}')
    sys.stdout.write(head[: -len("[]\n}")] + "[\n")
    line = first
    while line:
        following = spill.readline()
        item = textwrap.indent(json.dumps(json.loads(line), indent=2), "    ")
        sys.stdout.write(item + (",\n" if following else "\n"))
        line = following
    sys.stdout.write("  ]\n}\n")


def _print_error(path: str, error: dict[str, Any]) -> None:
    where = f" (custom_id {error['customId']!r})" if error["customId"] else ""
    typer.echo(f"{path}:{error['line']}: {error['rule']}: {error['message']}{where}")


def _print_summary(report: FileReport) -> None:
    models = ", ".join(f"{name} ({count})" for name, count in report.models.most_common())
    summary = f"{report.valid} valid, {report.invalid} invalid"
    if report.endpoint:
        summary += f"; endpoint {report.endpoint}"
    if models:
        summary += f"; models: {models}"
    if report.prompt_tokens is not None:
        summary += f"; {report.prompt_tokens} prompt tokens [{report.token_method}]"
    typer.echo(summary, err=bool(report.invalid))
