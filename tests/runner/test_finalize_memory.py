"""Finalize's memory does not grow with the batch: 200,000 records merged from small parts,
segment by segment, with a Python heap peak far below the size of the output."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from llmbatch.api.layout import OutputLayout
from llmbatch.api.plan import ByteRange, Chunk, PlanSummary, Segment
from llmbatch.runner import records
from llmbatch.runner.finalize import FinalizeConfig, finalize

LINES = 200_000
CHUNK = 500
SEGMENT = 10_000


def _input(path: Path) -> list[tuple[int, int]]:
    """A batch of LINES small requests; each line's (offset, length)."""
    spans: list[tuple[int, int]] = []
    offset = 0
    with path.open("wb") as handle:
        for i in range(LINES):
            raw = (
                f'{{"custom_id":"r{i}","method":"POST","url":"/v1/chat/completions",'
                f'"body":{{"model":"m","messages":[{{"role":"user","content":"q{i}"}}]}}}}\n'
            ).encode()
            handle.write(raw)
            spans.append((offset, len(raw)))
            offset += len(raw)
    return spans


def _plan(out: Path, spans: list[tuple[int, int]], size: int, source: Path) -> None:
    layout = OutputLayout(str(out))
    segments = []
    for s, first in enumerate(range(1, LINES + 1, SEGMENT)):
        segments.append(
            Segment(
                index=s,
                first_line=first,
                last_line=first + SEGMENT - 1,
                first_chunk=(first - 1) // CHUNK,
                chunks=SEGMENT // CHUNK,
            )
        )
    for n, first in enumerate(range(1, LINES + 1, CHUNK)):
        offset = spans[first - 1][0]
        length = sum(length for _, length in spans[first - 1 : first - 1 + CHUNK])
        chunk = Chunk(
            index=n,
            segment=(first - 1) // SEGMENT,
            lines=CHUNK,
            ranges=[ByteRange(offset=offset, length=length, first_line=first, lines=CHUNK)],
        )
        target = Path(layout.chunk(n))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(chunk.to_json())
        # Every chunk answered but its last 10 lines, which finalize records as expired.
        answered = range(first, first + CHUNK - 10)
        part = Path(layout.chunk_part(n, 0, "ab12"))
        part.parent.mkdir(parents=True, exist_ok=True)
        part.write_bytes(
            b"".join(
                records.success_record("b", x, f"r{x - 1}", {"a": x}, 3, 1).encode()
                for x in answered
            )
        )
    summary = PlanSummary(
        input=str(source),
        input_bytes=size,
        input_lines=LINES,
        total=LINES,
        runnable=LINES,
        chunk_count=LINES // CHUNK,
        chunk_lines=CHUNK,
        segments=segments,
    )
    Path(layout.plan_summary).write_bytes(summary.to_json())


def test_finalize_of_200k_records_keeps_a_small_heap(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    spans = _input(source)
    out = tmp_path / "out"
    _plan(out, spans, source.stat().st_size, source)
    tracemalloc.start()
    try:
        manifest = finalize(FinalizeConfig(str(source), str(out), reason="expired"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    expired = 10 * (LINES // CHUNK)
    assert manifest["requestCounts"] == {
        "total": LINES,
        "completed": LINES - expired,
        "failed": expired,
    }
    output_size = (out / "output.jsonl").stat().st_size
    assert output_size > 30_000_000
    # One segment's parts and ranges at a time: a few MB, whatever the batch size.
    assert peak < 8_000_000, (
        f"finalize heap peak {peak / 1e6:.1f} MB for {output_size / 1e6:.0f} MB"
    )
    with (out / "output.jsonl").open("rb") as handle:
        first = handle.readline()
    assert b'"custom_id":"r0"' in first
