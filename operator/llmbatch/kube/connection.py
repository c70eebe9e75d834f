"""What a client needs to reach the API server: its URL, how to check its certificate, the
bearer token, and the namespace of the context it came from."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

# Re-read rotating tokens (projected service-account tokens, exec plugin tokens) this often.
TOKEN_REFRESH_SECONDS = 60.0


def no_token() -> str | None:
    return None


@dataclass(frozen=True)
class Connection:
    server: str
    verify: ssl.SSLContext | bool = True
    # Called before each request: the bearer token (or None); it caches as it likes.
    token: Callable[[], str | None] = no_token
    # The current context's namespace (the service account's in a pod): the CLI's default.
    namespace: str = "default"


class RefreshingToken:
    """A token read by ``load`` at most every TOKEN_REFRESH_SECONDS: rotated tokens are picked
    up without a restart, and no request waits on a file read or a plugin run."""

    def __init__(self, load: Callable[[], str | None]) -> None:
        self._load = load
        self._value: str | None = None
        self._read_at = float("-inf")

    def __call__(self) -> str | None:
        if time.monotonic() - self._read_at > TOKEN_REFRESH_SECONDS:
            self._value = self._load()
            self._read_at = time.monotonic()
        return self._value
