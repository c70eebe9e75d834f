"""``llmbatch results NAME``: download a finished BatchJob's output.jsonl, errors.jsonl and
manifest.json, and optionally join each result to its input request."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import typer

from llmbatch.cli.options import (
    FORMAT_OPTION,
    KUBECONFIG_OPTION,
    NAMESPACE_OPTION,
    OutputFormat,
    fail,
    print_json,
)

EPILOG = """\
Examples:

  llmbatch results summarize-3f2a9c1d --dir ./results

  llmbatch results summarize-3f2a9c1d --join   # adds joined.jsonl: request + response per line
"""

DIR_OPTION: Any = typer.Option(
    None, "--dir", "-d", file_okay=False, help="Where to write the files (default ./NAME)."
)
JOINED = "joined.jsonl"


@dataclass
class Downloaded:
    directory: Path
    files: dict[str, Path] = field(default_factory=dict)
    joined: Path | None = None
    joined_lines: int = 0
    missing: list[str] = field(default_factory=list)

    def has_results(self) -> bool:
        from llmbatch.api.layout import ERRORS_FILE, OUTPUT_FILE

        return OUTPUT_FILE in self.files or ERRORS_FILE in self.files

    def as_dict(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "files": {name: str(path) for name, path in self.files.items()},
            "joined": str(self.joined) if self.joined else None,
            "joinedLines": self.joined_lines,
            "missing": self.missing,
        }


def download_results(
    output_uri: str, input_uri: str | None, dest: Path, settings: Any, join: bool
) -> Downloaded:
    """Fetch the result files under ``output_uri`` into ``dest``; with ``join``, also write
    joined.jsonl in input order."""
    from llmbatch.api.layout import ERRORS_FILE, OUTPUT_FILE, RESULT_FILES, OutputLayout
    from llmbatch.storage import get_store

    dest.mkdir(parents=True, exist_ok=True)
    store = get_store(output_uri, settings)
    result = Downloaded(dest)
    layout = OutputLayout(output_uri)
    for name in RESULT_FILES:
        uri = layout.result(name)
        if store.exists(uri):
            store.download_file(uri, dest / name)
            result.files[name] = dest / name
        else:
            result.missing.append(name)
    if join:
        if input_uri is None:
            raise ValueError("joining needs the input URI")
        result.joined = dest / JOINED
        lines = get_store(input_uri, settings).read_lines(input_uri)
        outputs = [result.files[n] for n in (OUTPUT_FILE, ERRORS_FILE) if n in result.files]
        result.joined_lines = join_results(lines, outputs, result.joined)
    return result


def _index(path: Path) -> Iterator[tuple[str, int]]:
    """(custom_id, byte offset) of each line of a result file."""
    with path.open("rb") as handle:
        offset = 0
        for raw in handle:
            if raw.strip():
                custom_id = json.loads(raw).get("custom_id")
                if isinstance(custom_id, str):
                    yield custom_id, offset
            offset += len(raw)


def join_results(input_lines: Iterator[bytes], result_files: list[Path], joined: Path) -> int:
    """Write one line per input request: the request, and its response or error.

    Only byte offsets of results are held in memory (not the results), so a large batch joins
    with memory proportional to its number of requests, not to its output size."""
    where: dict[str, tuple[int, int]] = {}
    for number, path in enumerate(result_files):
        for custom_id, offset in _index(path):
            where[custom_id] = (number, offset)
    handles: list[BinaryIO] = [path.open("rb") for path in result_files]
    count = 0
    try:
        with joined.open("w", encoding="utf-8") as out:
            for lineno, raw in enumerate(input_lines, start=1):
                if not raw.strip():
                    continue
                try:
                    request = json.loads(raw)
                except ValueError:
                    request = {"raw": raw.decode("utf-8", "replace")}
                key: Any = request.get("custom_id") if isinstance(request, dict) else None
                found: dict[str, Any] = {}
                if isinstance(key, str) and key in where:
                    number, offset = where[key]
                    handles[number].seek(offset)
                    found = json.loads(handles[number].readline())
                response = found.get("response") or {}
                row = {
                    "line": lineno,
                    "custom_id": key,
                    "request": request.get("body") if isinstance(request, dict) else request,
                    "status_code": response.get("status_code"),
                    "response": response.get("body"),
                    "error": found.get("error")
                    if found
                    else {"code": "missing", "message": "no result line"},
                }
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
    finally:
        for handle in handles:
            handle.close()
    return count


def results(
    name: str = typer.Argument(..., help="BatchJob name."),
    directory: Path | None = DIR_OPTION,
    join: bool = typer.Option(
        False, "--join", help="Also write joined.jsonl: each input request with its result."
    ),
    namespace: str | None = NAMESPACE_OPTION,
    kubeconfig: Path | None = KUBECONFIG_OPTION,
    s3_endpoint: str | None = typer.Option(
        None,
        "--s3-endpoint",
        envvar="AWS_ENDPOINT_URL",
        help="S3 endpoint as seen from here (default: the BatchJob's spec.storage.endpoint).",
    ),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Download a BatchJob's results (output.jsonl, errors.jsonl, manifest.json)."""
    import dataclasses

    from llmbatch.cli.kube import BatchJobClient, KubeError
    from llmbatch.storage import StorageError, StorageSettings

    try:
        obj = BatchJobClient.connect(kubeconfig, namespace).get(name)
    except KubeError as exc:
        raise fail(str(exc)) from exc
    spec: dict[str, Any] = obj.get("spec") or {}
    phase = (obj.get("status") or {}).get("phase")
    if phase not in {"Succeeded", "Failed", "Expired", "Cancelled"}:
        typer.echo(
            f"warning: {name} is {phase or 'not started'}; results may be incomplete", err=True
        )
    settings = StorageSettings.from_env()
    endpoint = s3_endpoint or (spec.get("storage") or {}).get("endpoint")
    if endpoint:
        settings = dataclasses.replace(settings, endpoint_url=endpoint)
    dest = directory or Path(name)
    try:
        got = download_results(str(spec["output"]), str(spec["input"]), dest, settings, join)
    except StorageError as exc:
        raise fail(str(exc)) from exc
    if output_format is OutputFormat.JSON:
        print_json({"name": name, "phase": phase, **got.as_dict()})
        return
    for file in got.files.values():
        typer.echo(f"wrote {file}")
    if got.joined:
        typer.echo(f"wrote {got.joined} ({got.joined_lines} requests)")
    if got.missing:
        typer.echo(f"not found under {spec['output']}: {', '.join(got.missing)}", err=True)
    if not got.has_results():
        raise typer.Exit(1)
