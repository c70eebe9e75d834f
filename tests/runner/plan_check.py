"""Helpers for the plan step's tests (test_plan*.py): plan a file with ``make_plan``, read its
chunks' bytes back through their ranges, and its error parts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmbatch.api.layout import OutputLayout
from llmbatch.api.plan import Chunk, PlanSummary
from llmbatch.runner.plan import PlanConfig, make_plan, read_chunk
from llmbatch.runner.records import Record, decode_record
from llmbatch.storage import ObjectStore, get_store
from llmbatch_sandbox.models import TINY_SERVED_NAME


@dataclass(frozen=True)
class Planned:
    summary: PlanSummary
    store: ObjectStore
    layout: OutputLayout

    def chunks(self) -> list[Chunk]:
        return [read_chunk(self.store, self.layout, n) for n in range(self.summary.chunk_count)]

    def chunk_lines(self, data: bytes) -> list[list[tuple[int, bytes]]]:
        """Per chunk, in feeding order: (input line number, raw line) read back from the
        input's bytes through the chunk's ranges."""
        result = []
        for chunk in self.chunks():
            lines: list[tuple[int, bytes]] = []
            for byte_range in chunk.ranges:
                piece = data[byte_range.offset : byte_range.offset + byte_range.length]
                raws = piece.split(b"\n")
                if raws[-1] == b"":
                    raws.pop()
                assert len(raws) == byte_range.lines, byte_range
                lines += [(byte_range.first_line + i, raw) for i, raw in enumerate(raws)]
            assert len(lines) == chunk.lines
            result.append(lines)
        return result

    def error_records(self) -> list[Record]:
        return [
            decode_record(raw)
            for uri in self.summary.error_parts
            for raw in self.store.read_bytes(uri).splitlines()
        ]


def plan_file(path: Path | str, output: Path | str, **options: Any) -> Planned:
    options.setdefault("model_source", "hf://example/not-local")
    options.setdefault("served_model_name", TINY_SERVED_NAME)
    config = PlanConfig(input_uri=str(path), output_uri=str(output), **options)
    summary = make_plan(config)
    return Planned(summary, get_store(str(output), config.settings), OutputLayout(str(output)))
