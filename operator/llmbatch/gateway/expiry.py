"""File expiry: ``expires_after`` on upload and ``output_expires_after`` on batch creation, both
``{"anchor": "created_at", "seconds": N}`` with N from one hour to 30 days, as OpenAI takes
them. An expired file answers 404 at once (reads compare ``expires_at`` with the clock); the
sweeper (``sweeper.py``) deletes its objects later.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmbatch.api.gvk import LABEL_PREFIX

MIN_SECONDS = 3600
MAX_SECONDS = 30 * 24 * 3600
# On a gateway BatchJob: the seconds its output and error files live after they are written.
OUTPUT_EXPIRES_ANNOTATION = f"{LABEL_PREFIX}/output-expires-after-seconds"
# Set by a sweeper once the expired output and error files are deleted (Unix seconds).
OUTPUTS_DELETED_ANNOTATION = f"{LABEL_PREFIX}/outputs-deleted-at"


def check_expires_after(anchor: Any, seconds: Any, field: str) -> int:
    """The seconds of a valid policy; ValueError naming ``field`` and the bounds otherwise."""
    if anchor != "created_at":
        raise ValueError(f"{field}.anchor must be 'created_at' (got {anchor!r})")
    text = str(seconds).strip() if isinstance(seconds, (int, str)) else ""
    if isinstance(seconds, bool) or not text.lstrip("-").isdigit():
        raise ValueError(f"{field}.seconds must be an integer from {MIN_SECONDS} to {MAX_SECONDS}")
    value = int(text)
    if not MIN_SECONDS <= value <= MAX_SECONDS:
        raise ValueError(
            f"{field}.seconds must be between {MIN_SECONDS} (1 hour) and {MAX_SECONDS} "
            f"(30 days); got {value}"
        )
    return value


def from_form(fields: Mapping[str, str]) -> int | None:
    """``expires_after[anchor]`` and ``expires_after[seconds]`` of a multipart upload (the
    SDK's encoding of the nested object); None when neither is given."""
    anchor = fields.get("expires_after[anchor]")
    seconds = fields.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return None
    return check_expires_after(anchor, seconds, "expires_after")


def from_body(value: Any) -> int | None:
    """``output_expires_after`` of a batch creation body; None when absent."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError("output_expires_after must be an object {anchor, seconds}")
    return check_expires_after(value.get("anchor"), value.get("seconds"), "output_expires_after")


def is_expired(expires_at: int | None, now: float) -> bool:
    return expires_at is not None and now >= expires_at


def output_expires_at(job: Mapping[str, Any], created_at: int) -> int | None:
    """When a gateway batch's output and error files expire (None: never)."""
    annotations = (job.get("metadata") or {}).get("annotations") or {}
    seconds = str(annotations.get(OUTPUT_EXPIRES_ANNOTATION, ""))
    return created_at + int(seconds) if seconds.isdigit() and created_at else None
