"""A container run as a local process: executable lookup (the virtualenv's ``bin`` first, so
``llmbatch-runner`` works as an image entrypoint), the environment a container image would
provide, a process group per container so signals reach its children too, and its output
forwarded line by line."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from llmbatch_sandbox.kubelet.cpus import pin

# Settings a runner image bakes in; pods inherit them from the sandbox's own environment.
INHERITED_PREFIXES = ("VLLM_", "HF_", "TRANSFORMERS_", "OMP_", "TOKENIZERS_")
INHERITED_NAMES = ("HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER")

LineSink = Callable[[bytes], None]


def venv_bin() -> Path:
    return Path(sys.executable).parent


def default_path() -> str:
    return os.pathsep.join([str(venv_bin()), os.environ.get("PATH", os.defpath)])


def base_environment(hostname: str) -> dict[str, str]:
    """What a container starts with before the pod's own ``env``."""
    env = {"PATH": default_path(), "HOSTNAME": hostname}
    for name, value in os.environ.items():
        if name.startswith(INHERITED_PREFIXES) or name in INHERITED_NAMES:
            env[name] = value
    return env


def find_executable(name: str, path: str) -> str | None:
    """Like the container runtime: an absolute or relative path is taken as is; a bare name is
    searched in the virtualenv's bin directory, then on ``path``."""
    if os.sep in name:
        candidate = Path(name)
        return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None
    local = venv_bin() / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(name, path=path)


def exit_code(returncode: int) -> int:
    """A signal death reads as 128 + signal number, as container runtimes report it."""
    return returncode if returncode >= 0 else 128 - returncode


class ContainerProcess:
    """One running container. ``on_stdout``/``on_stderr`` receive whole lines (with their
    newline; a last unterminated line is flushed at exit)."""

    def __init__(self, process: asyncio.subprocess.Process, sink: LineSink) -> None:
        self.process = process
        self._sink = sink
        self._pumps = [
            asyncio.create_task(self._pump(process.stdout)),
            asyncio.create_task(self._pump(process.stderr)),
        ]

    @classmethod
    async def start(
        cls,
        argv: list[str],
        env: dict[str, str],
        cwd: str,
        sink: LineSink,
        cpus: frozenset[int] | None = None,
    ) -> ContainerProcess:
        """``cpus``: pin the process (and what it starts) to these cores."""
        # runc creates a missing working directory; so do we.
        os.makedirs(cwd, exist_ok=True)
        process = await asyncio.create_subprocess_exec(
            *argv,
            env=env,
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            # Set in the child before exec, so every thread it ever starts inherits the mask.
            preexec_fn=functools.partial(pin, cpus) if cpus else None,
        )
        return cls(process, sink)

    @property
    def pid(self) -> int:
        return self.process.pid

    async def _pump(self, stream: asyncio.StreamReader | None) -> None:
        if stream is None:
            return
        pending = b""
        while True:
            chunk = await stream.read(65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._sink(line + b"\n")
        if pending:
            self._sink(pending)

    async def wait(self) -> int:
        """The container's exit code, once its output has been forwarded."""
        returncode = await self.process.wait()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        return exit_code(returncode)

    def signal(self, sig: int) -> None:
        """Signal the whole process group (the container's children too)."""
        if self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    async def terminate(self, grace_seconds: float) -> int:
        """SIGTERM, then SIGKILL once ``grace_seconds`` have passed."""
        self.signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(asyncio.shield(self.wait()), timeout=grace_seconds)
        except TimeoutError:
            self.signal(signal.SIGKILL)
            return await self.wait()
