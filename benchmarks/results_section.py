"""One section of benchmarks/RESULTS.md, between a script's own begin/end markers: written
by the benchmark that measured it, replaced whole on its next run."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def replace_section(name: str, body: str, results: Path = RESULTS) -> None:
    """Put ``body`` between ``<!-- <name>:begin -->`` and ``<!-- <name>:end -->`` (appended
    at the end the first time)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    section = f"{begin}\n{body.strip()}\n{end}"
    text = results.read_text() if results.exists() else "# Benchmark results\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    results.write_text(text)
