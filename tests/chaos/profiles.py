"""Hypothesis settings for the hardening suites: a short form that runs in ``make test`` and a
full form when ``LLMBATCH_CHAOS=full`` (``make test-chaos``).

Profiles are applied per test (``@FUZZ``), not loaded globally, so other suites keep
hypothesis' defaults."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

FULL = os.environ.get("LLMBATCH_CHAOS", "").strip().lower() == "full"

_COMMON = {
    "deadline": None,  # a shared 2-core machine: wall-clock per example is noise
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "derandomize": not FULL,  # the short form is reproducible in CI
    "print_blob": True,
}
settings.register_profile("llmbatch-short", max_examples=60, **_COMMON)  # type: ignore[arg-type]
settings.register_profile("llmbatch-full", max_examples=1500, **_COMMON)  # type: ignore[arg-type]
settings.register_profile("llmbatch-slow-short", max_examples=3, **_COMMON)  # type: ignore[arg-type]
settings.register_profile("llmbatch-slow-full", max_examples=20, **_COMMON)  # type: ignore[arg-type]

# Cheap properties (pure functions, in-process HTTP).
FUZZ = settings(settings.get_profile("llmbatch-full" if FULL else "llmbatch-short"))
# Properties whose examples each cost seconds (vLLM, subprocesses).
FUZZ_SLOW = settings(settings.get_profile("llmbatch-slow-full" if FULL else "llmbatch-slow-short"))


def scaled(short: int, full: int) -> int:
    """A count for the current form of the suite."""
    return full if FULL else short
