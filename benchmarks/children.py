"""End a benchmark's child processes with it.

An interrupted benchmark left vLLM engine-core processes behind: subprocess.run kills only
the child it started, and the engine core that child had spawned lived on under init, using a
core for 40 minutes and skewing the next benchmark's timings (benchmarks/RESULTS.md, prefix
grouping, session 3). So on Ctrl-C or SIGTERM each benchmark first stops every descendant
while the process tree is still whole, and at exit it stops any that are left.
"""

from __future__ import annotations

import atexit
import signal
import sys
from types import FrameType

import psutil

_GRACE_SECONDS = 5.0


def stop_descendants() -> int:
    """SIGTERM every descendant of this process, SIGKILL those alive after the grace; how
    many there were."""
    found = psutil.Process().children(recursive=True)
    for proc in found:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(found, timeout=_GRACE_SECONDS)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            continue
    return len(found)


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    # Ignore a second signal while the children stop (Ctrl-C pressed twice).
    signal.signal(signum, signal.SIG_IGN)
    stop_descendants()
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    sys.exit(128 + signum)


def end_children_with_this_process() -> None:
    """Install the handlers; call once at the start of a benchmark's main()."""
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    atexit.register(stop_descendants)
