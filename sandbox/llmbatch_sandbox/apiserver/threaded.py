"""Run an ``ApiServer`` on its own event loop in a background thread (tests, scripts)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from types import TracebackType
from typing import Any

from llmbatch_sandbox.apiserver.server import ApiServer


class ThreadedApiServer:
    def __init__(self, **kwargs: Any) -> None:
        self.server = ApiServer(**kwargs)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="apiserver", daemon=True)
        self.url = ""

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self) -> str:
        self._thread.start()
        self.url = self.call(self.server.start())
        return self.url

    def call(self, coro: Any, timeout: float = 30.0) -> Any:
        """Run a coroutine on the server's loop and wait for its result."""
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def run(self, func: Any, *args: Any, timeout: float = 30.0) -> Any:
        """Call a plain function on the server's loop (the store is not thread-safe)."""

        async def wrapper() -> Any:
            return func(*args)

        return self.call(wrapper(), timeout)

    def stop(self) -> None:
        try:
            self.call(self.server.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            self.loop.close()

    def __enter__(self) -> ThreadedApiServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
