"""Object ids: ``file-<suffix>`` and ``batch_<suffix>`` like OpenAI's, plus the ids under
which a batch's output and error files appear.

A suffix is a fixed-width base-36 millisecond timestamp followed by random base-36 digits, so
sorting ids sorts by creation time (listing newest-first needs no metadata reads) and the
suffix is a valid Kubernetes name fragment (the BatchJob is ``batch-<suffix>``).
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from typing import Literal

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_TIME_WIDTH = 9  # 36**9 ms reaches past the year 5000
_RANDOM_WIDTH = 8
SUFFIX_PATTERN = rf"[0-9a-z]{{{_TIME_WIDTH + _RANDOM_WIDTH}}}"

_FILE = re.compile(rf"^file-({SUFFIX_PATTERN})$")
_OUTPUT_FILE = re.compile(rf"^file-({SUFFIX_PATTERN})-(out|err)$")
_BATCH = re.compile(rf"^batch_({SUFFIX_PATTERN})$")


def _base36(value: int, width: int) -> str:
    digits = []
    for _ in range(width):
        value, rem = divmod(value, 36)
        digits.append(_DIGITS[rem])
    return "".join(reversed(digits))


def new_suffix(now: float | None = None) -> str:
    millis = int((time.time() if now is None else now) * 1000)
    rand = "".join(secrets.choice(_DIGITS) for _ in range(_RANDOM_WIDTH))
    return _base36(millis, _TIME_WIDTH) + rand


def new_file_id(now: float | None = None) -> str:
    return f"file-{new_suffix(now)}"


def new_batch_id(now: float | None = None) -> str:
    return f"batch_{new_suffix(now)}"


def batch_name(batch_id: str) -> str:
    """The BatchJob's metadata.name for a batch id."""
    match = _BATCH.match(batch_id)
    if match is None:
        raise ValueError(f"not a batch id: {batch_id!r}")
    return f"batch-{match.group(1)}"


def is_batch_id(value: str) -> bool:
    return _BATCH.match(value) is not None


def is_upload_id(value: str) -> bool:
    return _FILE.match(value) is not None


@dataclass(frozen=True)
class OutputFileRef:
    batch_id: str
    kind: Literal["output", "errors"]


def output_file_id(batch_id: str, kind: Literal["output", "errors"]) -> str:
    match = _BATCH.match(batch_id)
    if match is None:
        raise ValueError(f"not a batch id: {batch_id!r}")
    return f"file-{match.group(1)}-{'out' if kind == 'output' else 'err'}"


def parse_output_file_id(file_id: str) -> OutputFileRef | None:
    match = _OUTPUT_FILE.match(file_id)
    if match is None:
        return None
    kind: Literal["output", "errors"] = "output" if match.group(2) == "out" else "errors"
    return OutputFileRef(batch_id=f"batch_{match.group(1)}", kind=kind)
