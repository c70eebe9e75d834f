"""Adversarial JSONL through the shared line rules (``FileValidator``, ``iter_validated``), the
runner's plan step (where every line gets its verdict: a chunk's byte range or an error record)
and ``llmbatch validate``: never a crash or a hang, and every non-blank line accounted for
exactly once, as valid or as an error with its line number."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from llmbatch.api.layout import OutputLayout
from llmbatch.api.lines import (
    Endpoint,
    FileValidator,
    Limits,
    LineError,
    LineRule,
    ValidLine,
    iter_validated,
)
from llmbatch.api.plan import PlanSummary
from llmbatch.runner.chunkwork import Runnable, load_lines
from llmbatch.runner.parts import LineSet, iter_part_records
from llmbatch.runner.plan import PlanConfig, make_plan, read_chunk
from llmbatch.runner.plan.step import NO_FILE_LIMITS
from llmbatch.storage import get_store
from llmbatch.storage.lines import iter_lines
from tests.chaos.jsonl_gen import BOM, MODEL, GenLine, expected, join, jsonl_files
from tests.chaos.profiles import FUZZ
from tests.cli.app import cli_app

SMALL_LINE = 4096  # a small per-line limit, so "huge" lines stay cheap to generate

# Part of the chaos suite (full form in make test-chaos); fast, so also in make test.
pytestmark = pytest.mark.chaos


def _check(results: list[ValidLine | LineError], lines: list[GenLine], limit: int) -> None:
    want = expected(lines, limit)
    assert [r.line for r in results] == [v.line for v in want], "a line was lost or repeated"
    for result, verdict in zip(results, want, strict=True):
        assert isinstance(result, ValidLine) == verdict.valid, (result, verdict)
        if isinstance(result, LineError) and verdict.rule is not None:
            # A broken line may break the file's one-endpoint rule first (url is checked
            # before the body); either way it is an error and changes nothing after it.
            assert result.rule in (verdict.rule, LineRule.MIXED_URL), (result, verdict)
        if isinstance(result, ValidLine):
            assert result.request.custom_id == verdict.custom_id


@FUZZ
@given(jsonl_files())
def test_validator_accounts_for_every_line(lines: list[GenLine]) -> None:
    validator = FileValidator(limits=Limits(max_line_bytes=SMALL_LINE))
    results = list(iter_validated((line.raw for line in lines), validator))
    _check(results, lines, SMALL_LINE)


@FUZZ
@given(jsonl_files(), st.booleans(), st.booleans(), st.integers(1, 64))
def test_streamed_file_splits_into_the_same_lines(
    lines: list[GenLine], crlf: bool, final_newline: bool, chunk: int
) -> None:
    """The storage layer's block reader (any block size, CRLF files, no final newline) hands
    the validator the lines as written; CR is whitespace to the rules."""
    import io

    data = join(lines, crlf=crlf, final_newline=final_newline)
    raw_lines = list(iter_lines(io.BytesIO(data), chunk))
    validator = FileValidator(limits=Limits(max_line_bytes=SMALL_LINE))
    results = list(iter_validated(raw_lines, validator))
    _check(results, lines, SMALL_LINE)


@dataclass(frozen=True)
class PlanVerdicts:
    """The plan step's verdict on each line, read back the way shards and finalize read it."""

    summary: PlanSummary
    runnable: dict[int, Runnable]  # line -> the request a shard feeds the engine
    errors: dict[int, dict[str, Any]]  # line -> the "error" of its record in parts/plan/


def plan_verdicts(data: bytes, work: Path, chunk_lines: int) -> PlanVerdicts:
    source = work / "input.jsonl"
    source.write_bytes(data)
    out = (work / "out").as_uri() + "/"
    config = PlanConfig(
        source.as_uri(),
        out,
        "no-tokenizer",  # prompt tokens estimated: the verdicts do not depend on them
        MODEL,
        endpoint=Endpoint.CHAT_COMPLETIONS,
        chunk_lines=chunk_lines,
        work_dir=work,
    )
    summary = make_plan(config)
    store, layout = get_store(out), OutputLayout(out)
    runnable: dict[int, Runnable] = {}
    for index in range(summary.chunk_count):
        chunk = read_chunk(store, layout, index)
        for item in load_lines(store, source.as_uri(), chunk, LineSet()):
            assert item.lineno not in runnable, f"line {item.lineno} is in two chunks"
            runnable[item.lineno] = item
    errors: dict[int, dict[str, Any]] = {}
    for uri in summary.error_parts:
        for record in iter_part_records(store, uri):
            assert record.lineno not in errors, f"line {record.lineno} has two error records"
            errors[record.lineno] = json.loads(record.line)["error"]
    return PlanVerdicts(summary, runnable, errors)


def _assert_plan_agrees(
    plan: PlanVerdicts, lineno: int, want: ValidLine | LineError | None
) -> None:
    got_run, got_error = plan.runnable.get(lineno), plan.errors.get(lineno)
    if want is None:  # blank: in neither
        assert got_run is None and got_error is None, (lineno, got_run, got_error)
    elif isinstance(want, ValidLine):
        assert got_error is None and got_run is not None, (lineno, got_error)
        assert (got_run.custom_id, got_run.body) == (want.request.custom_id, want.request.body)
    else:
        assert got_run is None and got_error is not None, (lineno, want)
        assert got_error == want.as_error_body().model_dump(), (got_error, want)


@FUZZ
@given(jsonl_files(urls=["/v1/chat/completions"]), st.booleans(), st.booleans(), st.integers(1, 4))
def test_plan_verdicts_agree_with_the_validator(
    lines: list[GenLine], crlf: bool, final_newline: bool, chunk_lines: int
) -> None:
    """The plan step validates each line once for every shard: a line the validator takes
    lands in exactly one chunk and reads back as the same request; a line it refuses has one
    error record with the validator's code, rule and message; a blank line is in neither."""
    # The runner fixes the endpoint from its --endpoint; the plan has no per-file limits.
    reference = FileValidator(endpoint=Endpoint.CHAT_COMPLETIONS, limits=NO_FILE_LIMITS)
    data = join(lines, crlf=crlf, final_newline=final_newline)
    with tempfile.TemporaryDirectory(prefix="fuzz-plan-") as work:
        plan = plan_verdicts(data, Path(work), chunk_lines)
    for lineno, line in enumerate(lines, start=1):
        _assert_plan_agrees(plan, lineno, reference.check(lineno, line.raw))
    nonblank = sum(1 for line in lines if line.raw.strip())
    assert plan.summary.total == len(plan.runnable) + len(plan.errors) == nonblank
    assert plan.summary.invalid == len(plan.errors)


@pytest.mark.parametrize(
    "raw",
    [
        BOM
        + b'{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m"}}',
        '{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m"}}'.encode(
            "utf-16-le"
        ),
        b'{"custom_id":"a","method":"POST","url":"/v1/chat/completions",'
        b'"body":{"model":"m","note":"\xed\xa0\x80"}}',
        # Legal JSON whose custom_id is no UTF-8 string: the disk-backed duplicate index
        # must look it up without encoding it (it used to crash the whole plan step).
        b'{"custom_id":"\\ud800","method":"POST","url":"/v1/chat/completions",'
        b'"body":{"model":"m"}}',
    ],
    ids=["utf8-bom", "utf16", "cesu-surrogate", "lone-surrogate-id"],
)
def test_plan_rejects_what_the_validator_rejects(raw: bytes, tmp_path: Path) -> None:
    """Bytes json.loads would take (a BOM, UTF-16, encoded surrogates) but the rules refuse
    never reach a chunk."""
    want = FileValidator().check(1, raw)
    assert isinstance(want, LineError)
    plan = plan_verdicts(raw + b"\n", tmp_path, chunk_lines=1)
    _assert_plan_agrees(plan, 1, want)
    assert plan.summary.chunk_count == 0


def test_broken_first_line_does_not_fix_the_endpoint() -> None:
    """Regression: a first line with a valid url but a bad body used to fix the file's
    endpoint, turning every later valid line into a mixed_url error."""
    validator = FileValidator()
    bad = b'{"custom_id":"x","method":"POST","url":"/v1/embeddings","body":{}}'
    good = b'{"custom_id":"y","method":"POST","url":"/v1/chat/completions","body":{"model":"m"}}'
    first, second = validator.check(1, bad), validator.check(2, good)
    assert isinstance(first, LineError) and first.rule == LineRule.MISSING_MODEL
    assert isinstance(second, ValidLine)
    assert validator.endpoint is not None and validator.endpoint.value == "/v1/chat/completions"


@pytest.mark.parametrize("depth", [1_000, 100_000, 1_000_000])
def test_deep_nesting_is_an_error_not_a_crash(depth: int) -> None:
    for raw in (b"[" * depth, b'{"a":' * depth + b"1" + b"}" * depth, b"[" * depth + b"]" * depth):
        result = FileValidator().check(1, raw)
        assert isinstance(result, LineError) and result.rule == LineRule.INVALID_JSON


def test_huge_line_is_rejected_without_parsing() -> None:
    limit = 1024 * 1024
    raw = b'{"custom_id":"' + b"x" * (limit + 10) + b'"}'
    result = FileValidator(limits=Limits(max_line_bytes=limit)).check(1, raw)
    assert isinstance(result, LineError) and result.rule == LineRule.LINE_TOO_LONG


# --- llmbatch validate ---------------------------------------------------------------------


@FUZZ
@given(lines=jsonl_files(max_lines=15), crlf=st.booleans())
def test_validate_command_reports_every_bad_line(
    lines: list[GenLine], crlf: bool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("validate") / "input.jsonl"
    path.write_bytes(join(lines, crlf=crlf))
    result = CliRunner().invoke(cli_app(), ["validate", str(path), "-o", "json"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    report = json.loads(result.stdout)
    # The command uses the default line limit (64 MiB): nothing generated here is too long.
    want = expected(lines, 64 * 1024 * 1024)
    assert report["valid"] == sum(v.valid for v in want)
    assert [e["line"] for e in report["errors"]] == [v.line for v in want if not v.valid]
    assert result.exit_code == (1 if report["errors"] else 0)


def test_validate_command_as_a_process_survives_hostile_bytes(tmp_path: Path) -> None:
    """The real entry point, with its real stdout encoding: surrogates, NULs, BOMs and deep
    nesting in one file, in text and JSON output."""
    lines = [
        BOM
        + b'{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m"}}',
        b'{"custom_id":"s","method":"POST","url":"/v1/chat/completions",'
        b'"body":{"model":"m","note":"\\udc80"}}',
        b'{"custom_id":"s","method":"POST","url":"/v1/chat/completions","body":{"model":"m"}}',
        b"[" * 200_000,
        b'{"custom_id":"\x00"}',
        b"\xff\xfe",
        b"",
    ]
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"\n".join(lines))
    for fmt in ("text", "json"):
        proc = subprocess.run(
            [sys.executable, "-m", "llmbatch.cli.main", "validate", str(path), "-o", fmt],
            capture_output=True,
            timeout=60,
            env=dict(os.environ, PYTHONIOENCODING="utf-8"),
        )
        assert proc.returncode == 1, proc.stderr.decode(errors="replace")
        assert b"Traceback" not in proc.stderr
        if fmt == "json":
            report = json.loads(proc.stdout)
            assert report["valid"] == 1
            assert [e["line"] for e in report["errors"]] == [1, 3, 4, 5, 6]
