"""``llmbatch-runner`` as a process, for tests that signal and kill it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

NAME = "tiny-qwen"
ENGINE_ARGS = json.dumps({"max_model_len": 512})


def runner(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "llmbatch.runner.cli", *args]
    full_env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", **(env or {})}
    return subprocess.Popen(
        command,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def run_args(source: Path | str, out: Path | str, model: Path | str, *extra: str) -> list[str]:
    return [
        "run",
        "--input",
        str(source),
        "--output",
        str(out),
        "--model",
        str(model),
        "--served-model-name",
        NAME,
        "--engine-args",
        ENGINE_ARGS,
        "--metrics-port",
        "0",
        *extra,
    ]


def finish(proc: subprocess.Popen[bytes], timeout: float = 240) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err.decode(errors="replace")


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            raise AssertionError(
                f"runner exited {proc.returncode} before the condition held: "
                f"{finish(proc)[1][-3000:]}"
            )
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("condition not reached in time")
