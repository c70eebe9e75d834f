"""Failures that retrying a shard cannot fix (exit code 42)."""

from __future__ import annotations


class PermanentError(Exception):
    """Bad arguments, a missing input object or bucket, a model that cannot load."""
