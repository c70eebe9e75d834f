"""Fault injection for the chaos tests: make the next N requests matching a verb, resource,
namespace or name fail with a status code (a 410 on a watch arrives as an in-stream ERROR
event, as Kubernetes sends it), optionally after a delay (``code=0``: only slow). Watches
can also be closed and history compacted: see ``ApiServer.close_watches`` and
``ApiServer.expire_history``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmbatch_sandbox.apiserver.errors import ApiError

VERBS = {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}


@dataclass
class Fault:
    code: int
    times: int = 1
    verb: str | None = None
    resource: str | None = None  # "pods", "batchjobs" or "batchjobs/status"
    namespace: str | None = None
    name: str | None = None
    message: str | None = None
    retry_after: int | None = None
    delay: float = 0.0  # seconds to stall first (code 0: stall, then answer normally)
    hits: int = 0

    def matches(self, verb: str, resource: str, namespace: str | None, name: str | None) -> bool:
        return (
            self.times > 0
            and self.verb in (None, verb)
            and self.resource in (None, resource, resource.split("/")[0])
            and self.namespace in (None, namespace)
            and self.name in (None, name)
        )

    def error(self) -> ApiError:
        message = self.message or f"injected fault: {self.code}"
        return ApiError(
            self.code,
            message,
            retry_after=self.retry_after,
            details={"retryAfterSeconds": self.retry_after} if self.retry_after else None,
        )


class Faults:
    def __init__(self) -> None:
        self.rules: list[Fault] = []

    def inject(
        self,
        code: int,
        *,
        times: int = 1,
        verb: str | None = None,
        resource: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        message: str | None = None,
        retry_after: int | None = None,
        delay: float = 0.0,
    ) -> Fault:
        if verb is not None and verb not in VERBS:
            raise ValueError(f"unknown verb {verb!r}; one of {sorted(VERBS)}")
        fault = Fault(code, times, verb, resource, namespace, name, message, retry_after, delay)
        self.rules.append(fault)
        return fault

    def from_json(self, body: dict[str, Any]) -> Fault:
        allowed = {
            "code",
            "times",
            "verb",
            "resource",
            "namespace",
            "name",
            "message",
            "retry_after",
            "delay",
        }
        unknown = set(body) - allowed
        if unknown or "code" not in body:
            raise ApiError(400, f"a fault needs 'code' and takes only {sorted(allowed)}")
        return self.inject(**body)

    def clear(self) -> None:
        self.rules.clear()

    def take(
        self, verb: str, resource: str, namespace: str | None, name: str | None
    ) -> Fault | None:
        for fault in self.rules:
            if fault.matches(verb, resource, namespace, name):
                fault.times -= 1
                fault.hits += 1
                if fault.times <= 0:
                    self.rules.remove(fault)
                return fault
        return None
