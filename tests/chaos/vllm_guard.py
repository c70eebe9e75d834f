"""Loading vLLM in a process that already imported Flask (moto's in-process S3 server, used by
the gateway and storage fixtures) crashes: vLLM's Triton kernel override scans every module's
globals with ``hasattr(value, "__dict__")`` (vllm/triton_utils/dispatcher.py
``_rebind_kernels``), and on werkzeug's ``LocalProxy`` globals (``flask.request``, ``flask.g``,
...) that raises RuntimeError("Working outside of application context") instead of returning
False. This guard takes those proxies out of their modules while the engine loads."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def local_proxies_hidden() -> Iterator[None]:
    try:
        from werkzeug.local import LocalProxy
    except ImportError:
        yield
        return
    hidden: list[tuple[Any, str, Any]] = []
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for name, value in list(namespace.items()):
            # type() does not go through the proxy, unlike isinstance() or hasattr().
            if type(value) is LocalProxy:
                hidden.append((module, name, value))
                namespace[name] = None
    try:
        yield
    finally:
        for module, name, value in hidden:
            module.__dict__[name] = value
