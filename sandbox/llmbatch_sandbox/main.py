"""The sandbox as one object: API emulator, Job controller, kubelet, embedded S3, kubeconfig,
and optionally the operator as a child process. A single-machine stand-in for trying and
testing the operator, not a production cluster."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from llmbatch_sandbox.bootstrap import S3_SECRET, bootstrap, load_crd
from llmbatch_sandbox.jobcontroller import JobController
from llmbatch_sandbox.kubeapi import KubeApi
from llmbatch_sandbox.kubeconfig import DEFAULT_PATH, write_kubeconfig
from llmbatch_sandbox.kubelet import Kubelet
from llmbatch_sandbox.s3 import SandboxS3

log = logging.getLogger(__name__)


@dataclass
class SandboxConfig:
    host: str = "127.0.0.1"
    port: int = 0
    kubeconfig: Path = field(default_factory=lambda: DEFAULT_PATH)
    gpu_slots: int = 2
    # The kubelet's --cpu-manager-policy: none, or static (whole-number CPU limits pin cores).
    cpu_manager_policy: str = "none"
    operator: bool = False
    job_backoff_seconds: float = 1.0


class Sandbox:
    """``await start()`` brings everything up (the CRD served, the bucket and the Secret there);
    ``await stop()`` takes it down, pod processes included."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        from llmbatch_sandbox.apiserver import ApiServer

        self.config = config or SandboxConfig()
        self.apiserver = ApiServer(host=self.config.host, port=self.config.port)
        self.s3 = SandboxS3(host=self.config.host)
        self.api_url = ""
        self.kubeconfig = Path()
        self.s3_secret = S3_SECRET
        self._api: KubeApi | None = None
        self.jobs: JobController | None = None
        self.kubelet: Kubelet | None = None
        self.operator: asyncio.subprocess.Process | None = None

    @property
    def s3_endpoint(self) -> str:
        return self.s3.endpoint_url

    async def start(self) -> None:
        crd = load_crd()  # fail before anything listens if the CRD cannot be found
        s3_started = asyncio.create_task(asyncio.to_thread(self.s3.start))
        self.api_url = await self.apiserver.start()
        await s3_started
        api = self._api = KubeApi(self.api_url)
        await bootstrap(api, self.s3.credentials, crd, gpu_slots=self.config.gpu_slots)
        self.kubelet = Kubelet(
            KubeApi(self.api_url),
            self._append_log,
            gpu_slots=self.config.gpu_slots,
            cpu_manager_policy=self.config.cpu_manager_policy,
        )
        self.jobs = JobController(
            KubeApi(self.api_url), backoff_base=self.config.job_backoff_seconds
        )
        await asyncio.gather(self.kubelet.start(), self.jobs.start())
        self.kubeconfig = write_kubeconfig(self.config.kubeconfig, self.api_url)
        if self.config.operator:
            await self._start_operator()

    def _append_log(self, namespace: str, pod: str, container: str, data: bytes) -> None:
        self.apiserver.append_pod_log(namespace, pod, data, container=container)

    async def _start_operator(self) -> None:
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig))
        # BatchJobs without spec.storage.endpoint use the sandbox's S3 (examples rely on it).
        env.setdefault("LLMBATCH_DEFAULT_S3_ENDPOINT", self.s3.endpoint_url)
        # Fixed ports collide on a shared machine: metrics and liveness are off unless the
        # environment asks for them.
        options: list[str] = []
        if "LLMBATCH_METRICS_PORT" not in env:
            options += ["--metrics-port", "0"]
        if "LLMBATCH_LIVENESS" not in env:
            options += ["--liveness", ""]
        # The operator's output goes to our stderr: our stdout carries the ready lines.
        self.operator = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "llmbatch.cli.main",
            "operator",
            *options,
            env=env,
            stdout=sys.stderr.fileno(),
            stderr=sys.stderr.fileno(),
            start_new_session=True,
        )

    async def stop(self) -> None:
        if self.operator is not None and self.operator.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.operator.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.operator.wait(), timeout=10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.operator.kill()
                await self.operator.wait()
        if self.kubelet is not None:
            await self.kubelet.stop()
            await self.kubelet.api.close()
        if self.jobs is not None:
            await self.jobs.stop()
            await self.jobs.api.close()
        if self._api is not None:
            await self._api.close()
        await self.apiserver.stop()
        await asyncio.to_thread(self.s3.stop)

    async def __aenter__(self) -> Sandbox:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- sandbox-only controls (see llmbatch_sandbox.kubelet.kubelet) -------------------

    async def preempt_pod(self, namespace: str, name: str) -> bool:
        """DisruptionTarget=True on the pod, then delete it, as a scheduler preemption."""
        assert self.kubelet is not None, "start() first"
        return await self.kubelet.preempt(namespace, name)

    def kill_pod(self, namespace: str, name: str, sig: int = signal.SIGKILL) -> bool:
        """Send ``sig`` (SIGKILL by default) to the pod's container processes."""
        assert self.kubelet is not None, "start() first"
        return self.kubelet.kill(namespace, name, sig)


async def serve(config: SandboxConfig) -> int:
    """Run until SIGINT/SIGTERM; print the ready lines on stdout once everything serves."""
    sandbox = Sandbox(config)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await sandbox.start()
    except BaseException:
        await sandbox.stop()
        raise
    print(f"KUBECONFIG={sandbox.kubeconfig}", flush=True)
    print(f"S3_ENDPOINT={sandbox.s3_endpoint}", flush=True)
    log.info(
        "sandbox ready: API %s, S3 %s (bucket %s, Secret default/%s)%s; Ctrl-C stops it",
        sandbox.api_url,
        sandbox.s3_endpoint,
        sandbox.s3.bucket,
        S3_SECRET,
        ", operator running" if sandbox.operator else "",
    )
    watcher = asyncio.create_task(_watch_operator(sandbox))
    await stopping.wait()
    watcher.cancel()
    log.info("stopping the sandbox")
    await sandbox.stop()
    return 0


async def _watch_operator(sandbox: Sandbox) -> None:
    """The cluster stays up when the operator dies (so it can be inspected); say so loudly."""
    if sandbox.operator is None:
        return
    code = await sandbox.operator.wait()
    log.error("the operator exited with code %s; the sandbox keeps running", code)
