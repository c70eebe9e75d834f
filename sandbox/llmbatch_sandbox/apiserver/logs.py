"""Pod logs: the kubelet appends a container's output here and ``GET .../pods/x/log`` reads
it (``follow`` streams until the pod ends or is deleted)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

LogKey = tuple[str, str, str]  # namespace, pod, container


class PodLogs:
    def __init__(self) -> None:
        self._data: dict[LogKey, bytearray] = {}
        self._changed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.get_ident()

    def append(self, ns: str, pod: str, container: str, data: bytes) -> None:
        """Thread-safe: from another thread the append is handed to the server's loop."""
        if self._loop is not None and threading.get_ident() != self._thread:
            self._loop.call_soon_threadsafe(self._append, ns, pod, container, bytes(data))
        else:
            self._append(ns, pod, container, bytes(data))

    def _append(self, ns: str, pod: str, container: str, data: bytes) -> None:
        self._data.setdefault((ns, pod, container), bytearray()).extend(data)
        self._changed.set()
        self._changed = asyncio.Event()

    def read(self, ns: str, pod: str, container: str) -> bytes:
        return bytes(self._data.get((ns, pod, container), b""))

    def forget(self, ns: str, pod: str) -> None:
        for key in [k for k in self._data if k[:2] == (ns, pod)]:
            del self._data[key]

    async def follow(
        self, ns: str, pod: str, container: str, offset: int, done: asyncio.Event
    ) -> AsyncIterator[bytes]:
        """New bytes after ``offset`` as they arrive, until ``done`` is set."""
        while True:
            changed = self._changed
            data = self._data.get((ns, pod, container), bytearray())
            if len(data) > offset:
                chunk = bytes(data[offset:])
                offset += len(chunk)
                yield chunk
                continue
            if done.is_set():
                return
            waiter = asyncio.ensure_future(changed.wait())
            stopper = asyncio.ensure_future(done.wait())
            try:
                await asyncio.wait(
                    {waiter, stopper}, timeout=5.0, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                waiter.cancel()
                stopper.cancel()


def tail(data: bytes, lines: int | None, limit: int | None) -> bytes:
    if lines is not None and lines >= 0:
        parts = data.splitlines(keepends=True)
        data = b"".join(parts[-lines:]) if lines else b""
    if limit is not None and limit >= 0:
        data = data[:limit]
    return data
