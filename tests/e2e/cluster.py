"""Helpers of the operator's end-to-end tests: kubectl (as users drive the cluster), the
operator as a subprocess that tests can kill and restart, S3 access, and waiting on
conditions with timeouts."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tests.fixtures.sandbox import SandboxInfo

T = TypeVar("T")
TERMINAL = ("Succeeded", "Failed", "Expired", "Cancelled")


def kubectl_path() -> str:
    local = Path(sys.executable).parent / "kubectl"
    return str(local) if local.exists() else "kubectl"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, check: Callable[[], T | None], timeout: float, every: float = 0.5) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
        except AssertionError:
            raise  # a verdict, not a transient error
        except Exception as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}"
            )
        time.sleep(every)


@dataclass
class Kubectl:
    sandbox: SandboxInfo
    namespace: str

    def run(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, KUBECONFIG=str(self.sandbox.kubeconfig))
        return subprocess.run(
            [kubectl_path(), "-n", self.namespace, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            check=check,
            timeout=60,
        )

    def apply(self, obj: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return self.run("apply", "-f", "-", stdin=json.dumps(obj), check=False)

    def prepare_namespace(self, secret: str) -> None:
        """Create this namespace and the S3 credentials Secret its BatchJobs name, as a user
        would before the first apply."""
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}}
        result = self.apply(namespace)
        assert result.returncode == 0, result.stderr
        keys = {
            "AWS_ACCESS_KEY_ID": self.sandbox.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.sandbox.secret_access_key,
        }
        credentials = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": secret},
            "data": {key: base64.b64encode(value.encode()).decode() for key, value in keys.items()},
        }
        result = self.apply(credentials)
        assert result.returncode == 0, result.stderr

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        result = self.run("get", kind, name, "-o", "json", check=False)
        if result.returncode != 0:
            return None
        parsed: dict[str, Any] = json.loads(result.stdout)
        return parsed

    def items(self, kind: str, selector: str | None = None) -> list[dict[str, Any]]:
        args = ["get", kind, "-o", "json"]
        if selector:
            args += ["-l", selector]
        parsed = json.loads(self.run(*args).stdout)
        items: list[dict[str, Any]] = parsed.get("items") or []
        return items

    def patch_spec(self, name: str, patch: dict[str, Any]) -> None:
        self.run("patch", "batchjob", name, "--type", "merge", "-p", json.dumps({"spec": patch}))

    def status(self, name: str) -> dict[str, Any]:
        body = self.get("batchjob", name) or {}
        status: dict[str, Any] = body.get("status") or {}
        return status

    def wait_phase(
        self, name: str, phases: tuple[str, ...] | str, timeout: float = 240
    ) -> dict[str, Any]:
        wanted = (phases,) if isinstance(phases, str) else phases

        def check() -> dict[str, Any] | None:
            status = self.status(name)
            phase = status.get("phase")
            if phase in TERMINAL and phase not in wanted:
                raise AssertionError(f"{name} ended {phase}: {status.get('message')}")
            return status if phase in wanted else None

        return wait_for(f"{name} to reach {'/'.join(wanted)}", check, timeout, every=1.0)


@dataclass
class OperatorProcess:
    """``llmbatch operator`` for one namespace, logging to a file."""

    sandbox: SandboxInfo
    namespace: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    liveness_port: int = 0
    metrics_port: int = 0
    starts: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        self.liveness_port = free_port()
        self.metrics_port = free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(self.sandbox.kubeconfig),
            "LLMBATCH_DEFAULT_S3_ENDPOINT": self.sandbox.s3_endpoint,
            "LLMBATCH_DEFAULT_S3_REGION": self.sandbox.region,
            "LLMBATCH_ACTIVE_INTERVAL": "1",
            "LLMBATCH_PROGRESS_INTERVAL": "2",
            # On a loaded machine a shard may still be loading the model at a short deadline;
            # give it time to stop by itself (and record "expired") before the operator steps in.
            "LLMBATCH_EXPIRE_STOP_GRACE": "120",
            # Last, so callers can override any of the above.
            **self.extra_env,
        }
        command = [
            sys.executable,
            "-m",
            "llmbatch.cli.main",
            "operator",
            "-n",
            self.namespace,
            "--metrics-port",
            str(self.metrics_port),
            "--liveness",
            f"http://127.0.0.1:{self.liveness_port}/healthz",
        ]
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts} ---\n".encode())
            log.flush()
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        wait_for("the operator's liveness endpoint", self.healthy, timeout=60)

    def healthy(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise AssertionError(f"operator exited; log:\n{self.log()}")
        url = f"http://127.0.0.1:{self.liveness_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]


@contextlib.contextmanager
def operator_running(
    sandbox: SandboxInfo, namespace: str, log_path: Path, runner_env: dict[str, str]
) -> Iterator[OperatorProcess]:
    """An operator for ``namespace`` whose shard pods get ``runner_env`` (the runner's own
    variables, e.g. LLMBATCH_CHUNK_LINES), stopped when the block ends."""
    extra = {f"LLMBATCH_RUNNER_ENV_{name}": value for name, value in runner_env.items()}
    proc = OperatorProcess(sandbox, namespace, log_path, extra_env=extra)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def requests_jsonl(count: int, model: str, prefix: str = "req", max_tokens: int = 8) -> bytes:
    lines = []
    for i in range(count):
        lines.append(
            json.dumps(
                {
                    "custom_id": f"{prefix}-{i}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {
                        "model": model,
                        "max_tokens": max_tokens,
                        "temperature": 0,
                        "messages": [{"role": "user", "content": f"Count to {i % 7 + 1}."}],
                    },
                }
            )
        )
    return ("\n".join(lines) + "\n").encode()


def jsonl(data: bytes) -> Iterator[dict[str, Any]]:
    for line in data.splitlines():
        if line.strip():
            yield json.loads(line)
