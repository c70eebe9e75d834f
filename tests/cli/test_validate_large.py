"""``llmbatch validate`` takes any size: no 50,000-line cap, duplicates found with the disk
index, errors streamed (the JSON document is the same as when it was built in memory), and
memory that does not grow with the file."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from llmbatch.cli.cmd_validate import check_file
from llmbatch.cli.options import print_json
from tests.cli.test_offline_commands import chat_line, invoke


def big_file(path: Path, count: int, every: int = 10_000) -> Path:
    """``count`` requests; every ``every``-th repeats the custom_id of the line before it, and
    one line in the middle is not JSON."""
    with path.open("w") as handle:
        for i in range(count):
            custom_id = f"r{i - 1}" if i % every == every - 1 else f"r{i}"
            handle.write(("{broken" if i == count // 2 else chat_line(custom_id)) + "\n")
    return path


def test_validate_over_50000_lines(tmp_path: Path) -> None:
    path = big_file(tmp_path / "big.jsonl", 60_000)
    result = invoke("validate", str(path), "-o", "json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["invalid"] == 7  # six duplicates and the broken line
    assert report["valid"] == 60_000 - 7
    assert [e["rule"] for e in report["errors"]].count("duplicate_custom_id") == 6
    assert "too_many_lines" not in {e["rule"] for e in report["errors"]}
    capped = invoke("validate", str(path), "--max-lines", "50000", "-o", "json")
    assert json.loads(capped.stdout)["errors"][-1]["rule"] == "too_many_lines"


def test_streamed_json_is_the_document_print_json_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = big_file(tmp_path / "some.jsonl", 40, every=7)
    result = invoke("validate", str(path), "-o", "json")
    print_json(check_file(path).as_dict())
    expected = capsys.readouterr().out
    assert result.stdout == expected
    clean = tmp_path / "clean.jsonl"
    clean.write_text(chat_line("only") + "\n")
    streamed = invoke("validate", str(clean), "-o", "json").stdout
    print_json(check_file(clean).as_dict())
    assert streamed == capsys.readouterr().out


def test_validate_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    peaks = {}
    for count in (5_000, 20_000):
        path = big_file(tmp_path / f"{count}.jsonl", count, every=100)
        errors: list[int] = []

        def note(error: dict[str, Any], seen: list[int] = errors) -> None:
            seen.append(error["line"])

        tracemalloc.start()
        try:
            report = check_file(path, on_error=note)
            peaks[count] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert report.invalid == len(errors) == count // 100 + 1
        assert report.errors == []
    assert peaks[20_000] - peaks[5_000] < 512 * 1024, peaks
