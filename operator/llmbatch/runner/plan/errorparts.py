"""The invalid lines' error records, written as parts under ``parts/plan/`` in the record
format of the runner's parts (``runner/records.py``), which finalize merges.

Records arrive in input line order, so the parts are in line order too: every line of part k
comes before every line of part k+1. A part is written once it holds PART_BYTES, which bounds
the memory whatever the number of invalid lines.
"""

from __future__ import annotations

from llmbatch.api.layout import OutputLayout
from llmbatch.runner.records import Record
from llmbatch.storage import ObjectStore

PART_BYTES = 8 * 1024 * 1024


class ErrorParts:
    def __init__(self, store: ObjectStore, layout: OutputLayout, part_bytes: int = PART_BYTES):
        self.store = store
        self.layout = layout
        self.part_bytes = part_bytes
        self.uris: list[str] = []
        self.count = 0
        self._buffer = bytearray()

    def add(self, record: Record) -> None:
        self._buffer += record.encode()
        self.count += 1
        if len(self._buffer) >= self.part_bytes:
            self._write()

    def close(self) -> list[str]:
        """Write what is left; the URIs of every part, in line order."""
        if self._buffer:
            self._write()
        return self.uris

    def _write(self) -> None:
        uri = self.layout.plan_errors_part(len(self.uris))
        # Overwriting is safe: no one reads these parts before plan.json lists them, and a
        # retried plan step writes the same records (the plan is a function of the input).
        self.store.write_bytes(uri, bytes(self._buffer), content_type="application/x-ndjson")
        self.uris.append(uri)
        self._buffer.clear()
