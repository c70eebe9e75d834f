"""Plans for runner tests, built directly with the api/plan.py models.

A simple, honest planner: validates every line with the line rules, writes the invalid lines'
error records as the plan step does (parts/plan/errors-<k>.jsonl, runner/records.py format),
and cuts the runnable lines, in input order, into chunks of ``chunk_lines`` lines, each a list
of contiguous byte ranges. No prefix grouping unless ``order`` reorders the runnable lines of
each chunk (to test that the runner feeds a chunk's ranges in their order).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from llmbatch.api.layout import OutputLayout
from llmbatch.api.lines import Endpoint, FileValidator, Limits, LineError
from llmbatch.api.plan import ByteRange, Chunk, PlanSummary, Segment
from llmbatch.runner import records
from llmbatch.storage import StorageSettings, get_store

_NO_LIMITS = Limits(max_lines=2**62, max_bytes=2**62)


@dataclass(frozen=True)
class _Line:
    lineno: int
    offset: int
    length: int


def _ranges(lines: list[_Line]) -> list[ByteRange]:
    ranges: list[ByteRange] = []
    for line in lines:
        last = ranges[-1] if ranges else None
        if last is not None and last.first_line + last.lines == line.lineno:
            ranges[-1] = last.model_copy(
                update={"length": last.length + line.length, "lines": last.lines + 1}
            )
        else:
            ranges.append(
                ByteRange(offset=line.offset, length=line.length, first_line=line.lineno, lines=1)
            )
    return ranges


def write_plan(
    input_uri: str,
    output_uri: str,
    chunk_lines: int = 4,
    settings: StorageSettings | None = None,
    endpoint: Endpoint = Endpoint.CHAT_COMPLETIONS,
    order: Callable[[list[_Line]], list[_Line]] | None = None,
    batch_name: str = "",
    segment_lines: int = 1_000_000,
) -> PlanSummary:
    source = get_store(input_uri, settings)
    out = get_store(output_uri, settings)
    layout = OutputLayout(output_uri)
    data = source.read_bytes(input_uri)
    validator = FileValidator(endpoint=endpoint, limits=_NO_LIMITS)
    runnable: list[_Line] = []
    errors: list[bytes] = []
    offset, lineno, total = 0, 0, 0
    for raw in data.splitlines(keepends=True):
        lineno += 1
        result = validator.check(lineno, raw.rstrip(b"\n"))
        if result is not None:
            total += 1
        if isinstance(result, LineError):
            body = result.as_error_body()
            name = batch_name or output_uri.rstrip("/")
            errors.append(
                records.error_record(
                    name, lineno, result.custom_id, body.code, body.message
                ).encode()
            )
        elif result is not None:
            runnable.append(_Line(lineno, offset, len(raw)))
        offset += len(raw)
    chunks: list[Chunk] = []
    segments: list[Segment] = []
    for first in range(1, max(lineno, 1) + 1, segment_lines):
        last = min(first + segment_lines - 1, lineno)
        mine = [line for line in runnable if first <= line.lineno <= last]
        start_chunk = len(chunks)
        for start in range(0, len(mine), chunk_lines):
            members = mine[start : start + chunk_lines]
            ranges = _ranges_in_order(order(members)) if order else _ranges(members)
            chunks.append(
                Chunk(
                    index=len(chunks),
                    segment=len(segments),
                    lines=len(members),
                    bytes=sum(m.length for m in members),
                    ranges=ranges,
                )
            )
        segments.append(
            Segment(
                index=len(segments),
                first_line=first,
                last_line=last,
                first_chunk=start_chunk,
                chunks=len(chunks) - start_chunk,
            )
        )
    for chunk in chunks:
        out.write_bytes(layout.chunk(chunk.index), chunk.to_json())
    error_parts = []
    if errors:
        out.write_bytes(layout.plan_errors_part(0), b"".join(errors))
        error_parts.append(layout.plan_errors_part(0)[len(layout.prefix.rstrip("/")) + 1 :])
    summary = PlanSummary(
        input=input_uri,
        input_bytes=len(data),
        input_lines=lineno,
        total=total,
        runnable=len(runnable),
        invalid=len(errors),
        chunk_count=len(chunks),
        chunk_lines=chunk_lines,
        segments=segments,
        error_parts=error_parts,
        endpoint=endpoint.value,
    )
    out.write_bytes(layout.plan_summary, summary.to_json(indent=2))
    return summary


def _ranges_in_order(lines: list[_Line]) -> list[ByteRange]:
    """One range per line, in the given order (a prefix-grouped chunk's feeding order)."""
    return [
        ByteRange(offset=x.offset, length=x.length, first_line=x.lineno, lines=1) for x in lines
    ]
