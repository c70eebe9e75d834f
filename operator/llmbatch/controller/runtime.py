"""Process-wide state of the running operator: the API client, config and wake-up events."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from llmbatch.controller.config import OperatorConfig
from llmbatch.controller.kube import KubeApi


@dataclass
class Wakers:
    """One event per BatchJob uid: a watch event about the BatchJob's spec or its Jobs wakes
    its daemon now instead of at the next poll."""

    events: dict[str, asyncio.Event] = field(default_factory=dict)
    generations: dict[str, int] = field(default_factory=dict)

    def register(self, uid: str) -> asyncio.Event:
        event = self.events.setdefault(uid, asyncio.Event())
        return event

    def unregister(self, uid: str) -> None:
        self.events.pop(uid, None)

    def wake(self, uid: str) -> None:
        event = self.events.get(uid)
        if event is not None:
            event.set()


@dataclass
class Runtime:
    api: KubeApi
    config: OperatorConfig
    wakers: Wakers = field(default_factory=Wakers)


_runtime: Runtime | None = None


def set_runtime(runtime: Runtime | None) -> None:
    global _runtime
    _runtime = runtime


def get_runtime() -> Runtime:
    if _runtime is None:
        raise RuntimeError("the operator runtime is not started (kopf startup handler not run)")
    return _runtime
