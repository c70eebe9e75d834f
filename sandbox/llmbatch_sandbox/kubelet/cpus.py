"""Exclusive CPUs for containers, as the kubelet's static CPU manager policy gives them.

With ``--cpu-manager-policy static`` a container whose CPU limit is a whole number gets that
many cores of its own (its process and children are pinned to them with the CPU affinity
mask); other containers share the cores no one holds. On this single-machine sandbox that
makes a shard asking for ``cpu: 1`` really run on one core, so two shards are about twice as
fast as one instead of fighting over every core. When not enough cores are free the container
is not pinned rather than waiting (a real node would not have admitted the pod); containers
without a whole-number limit are not pinned either (the kubelet would confine them to the
cores no one holds; here the sandbox's own processes share those too).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

NONE = "none"
STATIC = "static"
POLICIES = (NONE, STATIC)


def whole_cpus(container: Mapping[str, Any]) -> int | None:
    """The container's CPU limit when it is a whole number of cores (``2``, ``2000m``)."""
    limit = ((container.get("resources") or {}).get("limits") or {}).get("cpu")
    if limit is None:
        return None
    text = str(limit).strip()
    try:
        cores = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError:
        return None
    return int(cores) if cores >= 1 and cores == int(cores) else None


class CpuPool:
    """The machine's cores (those this process may use), handed out exclusively."""

    def __init__(self, cpus: set[int] | None = None) -> None:
        self.all = frozenset(cpus if cpus is not None else os.sched_getaffinity(0))
        self._held: dict[str, frozenset[int]] = {}

    @property
    def free(self) -> frozenset[int]:
        taken = set().union(*self._held.values()) if self._held else set()
        return frozenset(self.all - taken)

    def acquire(self, owner: str, count: int) -> frozenset[int] | None:
        """``count`` free cores for ``owner`` (lowest numbers first); None if there are not
        enough free."""
        free = sorted(self.free)
        if count > len(free):
            return None
        cores = frozenset(free[:count])
        self._held[owner] = cores
        return cores

    def release(self, owner: str) -> None:
        self._held.pop(owner, None)


def pin(cpus: frozenset[int] | None) -> None:
    """In the child, before exec: restrict the process to ``cpus`` (None: leave it)."""
    if cpus:
        os.sched_setaffinity(0, cpus)
