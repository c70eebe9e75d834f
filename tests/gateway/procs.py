"""Gateway and operator subprocesses against the sandbox (or LLMBATCH_E2E_KUBECONFIG), for the
slow tests and the benchmark."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.fixtures.sandbox import SandboxInfo
from tests.gateway.conftest import free_port


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def gateway_config(
    sandbox: SandboxInfo, models: dict[str, Any], **overrides: Any
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "namespace": sandbox.namespace,
        "storage": {
            "endpoint": sandbox.s3_endpoint,
            "region": sandbox.region,
            "bucket": sandbox.bucket,
            "prefix": f"gw-{time.time_ns()}",
            "secretRef": "llmbatch-s3",
        },
        "models": models,
        "prices": {},
    }
    config.update(overrides)
    return config


class Process:
    def __init__(self, command: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.popen = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


class GatewayProcess(Process):
    def __init__(
        self,
        sandbox: SandboxInfo,
        config: dict[str, Any],
        workdir: Path,
        name: str = "gateway",
        probe: str = "/ready",
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config_path = workdir / f"{name}.yaml"
        config_path.write_text(yaml.safe_dump(config))
        command = [
            sys.executable,
            "-m",
            "llmbatch.cli.main",
            "gateway",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--config",
            str(config_path),
        ]
        super().__init__(command, sandbox.env(), workdir / f"{name}.log")
        self.probe = probe
        try:
            wait_for(self._ready, 60, f"{name} {probe}")
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"{name} did not become ready:\n{self.tail()}") from None

    def _ready(self) -> bool:
        if not self.alive():
            raise RuntimeError(f"gateway exited:\n{self.tail()}")
        try:
            return httpx.get(self.url + self.probe, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


def keys_cli(sandbox: SandboxInfo, *args: str) -> subprocess.CompletedProcess[str]:
    return namespaced_cli(sandbox, "keys", *args)


def namespaced_cli(
    sandbox: SandboxInfo, group: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """`llmbatch <group> <args> --namespace <the sandbox's>` as a user runs it."""
    command = [
        sys.executable,
        "-m",
        "llmbatch.cli.main",
        group,
        *args,
        "--namespace",
        sandbox.namespace,
    ]
    return subprocess.run(
        command,
        env=sandbox.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def create_key(sandbox: SandboxInfo, tenant: str, tier: str) -> str:
    result = keys_cli(sandbox, "create", "--tenant", tenant, "--tier", tier)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]
