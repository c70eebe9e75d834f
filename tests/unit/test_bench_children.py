"""benchmarks/children.py: an interrupted benchmark takes its grandchildren with it (an engine
core spawned by a runner the benchmark started), which plain subprocess.run does not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

# A benchmark in miniature: it runs a child (subprocess.run, as the benchmarks do) that starts
# a long-lived grandchild of its own, as a runner starts vLLM's engine core.
_SCRIPT = textwrap.dedent(
    """
    import subprocess, sys
    sys.path.insert(0, {benchmarks!r})
    if sys.argv[1] == "reap":
        from children import end_children_with_this_process
        end_children_with_this_process()
    child = (
        "import subprocess, sys, time\\n"
        "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\\n"
        "print(g.pid, flush=True)\\n"
        "time.sleep(120)\\n"
    )
    subprocess.run([sys.executable, "-c", child], check=False)
    """
)


def _grandchild_after_sigterm(tmp_path: Path, mode: str) -> tuple[int, psutil.Process | None]:
    """SIGTERM the benchmark once its grandchild runs; the grandchild if it is still alive
    10 s later, and the benchmark's process group (its own session) for the clean-up."""
    script = tmp_path / "bench.py"
    script.write_text(_SCRIPT.format(benchmarks=str(BENCHMARKS)))
    bench = subprocess.Popen(
        [sys.executable, str(script), mode], stdout=subprocess.PIPE, start_new_session=True
    )
    assert bench.stdout is not None
    grandchild = psutil.Process(int(bench.stdout.readline()))
    bench.send_signal(signal.SIGTERM)
    bench.wait(timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if grandchild.status() == psutil.STATUS_ZOMBIE:
                return bench.pid, None
        except psutil.NoSuchProcess:
            return bench.pid, None
        time.sleep(0.1)
    return bench.pid, grandchild


def test_sigterm_stops_the_grandchildren_too(tmp_path: Path) -> None:
    _, survivor = _grandchild_after_sigterm(tmp_path, "reap")
    assert survivor is None


def test_without_it_the_grandchild_outlives_the_benchmark(tmp_path: Path) -> None:
    """The failure the module exists for: proof that the check above can fail."""
    group, survivor = _grandchild_after_sigterm(tmp_path, "plain")
    os.killpg(group, signal.SIGKILL)  # the orphaned child and grandchild
    assert survivor is not None, "the grandchild ended without the handler: this proves nothing"
