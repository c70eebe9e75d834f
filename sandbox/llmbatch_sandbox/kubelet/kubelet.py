"""The sandbox's kubelet (and scheduler, for its single node): watches pods over HTTP and runs
each pod's first container as a local process, reporting status the way a kubelet does.

Sandbox-only controls, for tests of disruption handling and chaos (also callable in-process
as :meth:`Kubelet.preempt` and :meth:`Kubelet.kill`):

- annotation ``sandbox.llmbatch.io/preempt`` (any value) on a pod: the pod gets the condition
  ``DisruptionTarget=True`` (reason ``PreemptionByScheduler``) and is then deleted, as when the
  scheduler preempts it on a cluster;
- annotation ``sandbox.llmbatch.io/kill`` = a signal name (``SIGKILL``, ``SIGTERM``, ...; empty
  means SIGKILL): that signal is sent to the container's processes once per distinct value,
  as when a node kills a process (OOM killer, crash)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from llmbatch.api.timefmt import now_rfc3339
from llmbatch_sandbox.events import record_event
from llmbatch_sandbox.informer import Informer
from llmbatch_sandbox.kubeapi import ApiError, JsonObject, KubeApi, object_path
from llmbatch_sandbox.kubelet import podstatus as ps
from llmbatch_sandbox.kubelet.cpus import NONE, STATIC, CpuPool, whole_cpus
from llmbatch_sandbox.kubelet.envresolve import EnvError, EnvResolver, expand
from llmbatch_sandbox.kubelet.process import (
    ContainerProcess,
    base_environment,
    default_path,
    find_executable,
)

log = logging.getLogger(__name__)

PREEMPT_ANNOTATION = "sandbox.llmbatch.io/preempt"
KILL_ANNOTATION = "sandbox.llmbatch.io/kill"
GPU_RESOURCE = "nvidia.com/gpu"
NODE_NAME = "sandbox"
DEFAULT_GRACE_SECONDS = 30.0
CONFIG_RETRY_SECONDS = 1.0
# Kubernetes restarts crashed containers after 10 s doubling to 5 min; shorter here.
RESTART_BACKOFF_BASE = 1.0
RESTART_BACKOFF_CAP = 10.0

# (namespace, pod name, container name, bytes of output): appends to the pod's log.
LogSink = Callable[[str, str, str, bytes], None]


def gpu_request(pod: JsonObject) -> int:
    """GPUs the pod asks for: per container the limit (or request), summed."""
    total = 0
    for container in (pod.get("spec") or {}).get("containers") or []:
        resources = container.get("resources") or {}
        value = (resources.get("limits") or {}).get(GPU_RESOURCE)
        if value is None:
            value = (resources.get("requests") or {}).get(GPU_RESOURCE)
        with contextlib.suppress(TypeError, ValueError):
            total += int(str(value)) if value is not None else 0
    return total


def grace_seconds(pod: JsonObject) -> float:
    meta = pod.get("metadata") or {}
    for value in (
        meta.get("deletionGracePeriodSeconds"),
        (pod.get("spec") or {}).get("terminationGracePeriodSeconds"),
    ):
        if value is not None:
            return float(value)
    return DEFAULT_GRACE_SECONDS


def parse_signal(name: str) -> signal.Signals:
    text = (name or "SIGKILL").strip().upper()
    if text.isdigit():
        return signal.Signals(int(text))
    if not text.startswith("SIG"):
        text = "SIG" + text
    return signal.Signals[text]


@dataclass(eq=False)
class PodRuntime:
    """What the kubelet knows about one pod it runs."""

    pod: JsonObject
    gpus: int
    status: JsonObject = field(default_factory=dict)
    process: ContainerProcess | None = None
    task: asyncio.Task[None] | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    gone: bool = False
    preempted: bool = False
    kill_seen: str | None = None
    push_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def uid(self) -> str:
        return str(self.pod["metadata"]["uid"])

    @property
    def namespace(self) -> str:
        return str(self.pod["metadata"].get("namespace") or "default")

    @property
    def name(self) -> str:
        return str(self.pod["metadata"]["name"])

    @property
    def path(self) -> str:
        return object_path("v1", "pods", self.namespace, self.name)


class Kubelet:
    """Start with :meth:`start`; :meth:`stop` kills every pod process (SIGTERM, then SIGKILL
    after ``shutdown_grace`` seconds) without touching the API."""

    def __init__(
        self,
        api: KubeApi,
        log_sink: LogSink,
        gpu_slots: int = 2,
        shutdown_grace: float = 3.0,
        cpu_manager_policy: str = NONE,
    ) -> None:
        self.api = api
        self.log_sink = log_sink
        self.gpu_slots = gpu_slots
        # static: containers with a whole-number CPU limit get cores of their own (cpus.py).
        self.cpus = CpuPool() if cpu_manager_policy == STATIC else None
        self.shutdown_grace = shutdown_grace
        self.resolver = EnvResolver(api)
        self.pods = Informer(api, "/api/v1/pods", self._on_pod)
        self.runtimes: dict[str, PodRuntime] = {}
        self._gpus_used = 0
        self._gpu_changed = asyncio.Condition()
        self._closing = False
        self._background: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.pods.start()
        await asyncio.wait_for(self.pods.synced.wait(), timeout=10)

    async def stop(self) -> None:
        self._closing = True
        await self.pods.stop()
        for runtime in list(self.runtimes.values()):
            runtime.stop.set()
        await self._notify_gpus()
        tasks = [rt.task for rt in self.runtimes.values() if rt.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=self.shutdown_grace + 2)
        for runtime in self.runtimes.values():
            if runtime.process is not None:
                runtime.process.signal(signal.SIGKILL)
        for task in [*tasks, *self._background]:
            task.cancel()
        await asyncio.gather(*tasks, *self._background, return_exceptions=True)

    @property
    def gpus_in_use(self) -> int:
        return self._gpus_used

    # -- sandbox-only controls -------------------------------------------------------------

    def _find(self, namespace: str, name: str) -> PodRuntime | None:
        for runtime in self.runtimes.values():
            if runtime.namespace == namespace and runtime.name == name:
                return runtime
        return None

    async def preempt(self, namespace: str, name: str, message: str = "") -> bool:
        """Mark the pod DisruptionTarget=True, then delete it (graceful). False if unknown."""
        runtime = self._find(namespace, name)
        if runtime is None:
            return False
        await self._preempt(runtime, message)
        return True

    def kill(self, namespace: str, name: str, sig: int = signal.SIGKILL) -> bool:
        """Send ``sig`` to the pod's processes. False if the pod has no running process."""
        runtime = self._find(namespace, name)
        if runtime is None or runtime.process is None:
            return False
        runtime.process.signal(sig)
        return True

    # -- watch events ----------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _on_pod(self, kind: str, pod: JsonObject) -> None:
        uid = str(pod["metadata"].get("uid") or "")
        runtime = self.runtimes.get(uid)
        if kind == "DELETED":
            if runtime is not None:
                runtime.gone = True
                runtime.pod = pod
                self._request_stop(runtime)
            return
        if runtime is None:
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                return  # already ended before this kubelet saw it
            if self._closing:
                return
            runtime = PodRuntime(pod=pod, gpus=gpu_request(pod))
            self.runtimes[uid] = runtime
            runtime.task = asyncio.create_task(self._lifecycle(runtime), name=f"pod {uid}")
        else:
            runtime.pod = pod
        self._apply_controls(runtime)
        if pod["metadata"].get("deletionTimestamp"):
            self._request_stop(runtime)

    def _apply_controls(self, runtime: PodRuntime) -> None:
        annotations = runtime.pod["metadata"].get("annotations") or {}
        if PREEMPT_ANNOTATION in annotations and not runtime.preempted:
            runtime.preempted = True
            self._spawn(self._preempt(runtime, str(annotations[PREEMPT_ANNOTATION])))
        kill = annotations.get(KILL_ANNOTATION)
        # Applied once per distinct value, as soon as there is a process to signal.
        if kill is not None and kill != runtime.kill_seen and runtime.process is not None:
            runtime.kill_seen = kill
            try:
                sig = parse_signal(kill)
            except (KeyError, ValueError):
                log.warning("pod %s: unknown signal %r in %s", runtime.name, kill, KILL_ANNOTATION)
                return
            runtime.process.signal(sig)

    def _event(
        self,
        runtime: PodRuntime,
        reason: str,
        message: str,
        kind: str = "Normal",
        component: str = "kubelet",
    ) -> None:
        if self._closing:
            return
        involved = {"apiVersion": "v1", "kind": "Pod", "metadata": runtime.pod["metadata"]}
        self._spawn(record_event(self.api, involved, kind, reason, message, component))

    def _request_stop(self, runtime: PodRuntime) -> None:
        if not runtime.stop.is_set():
            runtime.stop.set()
            self._spawn(self._notify_gpus())

    async def _preempt(self, runtime: PodRuntime, message: str) -> None:
        runtime.preempted = True
        now = now_rfc3339()
        text = message if message and message.lower() not in ("true", "1", "yes") else ""
        ps.set_condition(
            runtime.status,
            "DisruptionTarget",
            "True",
            now,
            reason="PreemptionByScheduler",
            message=text or "sandbox: preempted on request",
        )
        await self._push(runtime)
        await self.api.delete(runtime.path, preconditions_uid=runtime.uid)

    # -- one pod's life --------------------------------------------------------------------

    async def _push(self, runtime: PodRuntime) -> None:
        if self._closing or runtime.gone:
            return
        async with runtime.push_lock:
            try:
                await self.api.merge_patch(runtime.path + "/status", {"status": runtime.status})
            except ApiError as error:
                if error.status != 404:
                    log.warning("pod %s: status not written: %s", runtime.name, error)

    async def _notify_gpus(self) -> None:
        async with self._gpu_changed:
            self._gpu_changed.notify_all()

    async def _acquire_gpus(self, runtime: PodRuntime) -> bool:
        """Wait for enough free GPU slots (Pending/Unschedulable meanwhile); False if the pod
        was deleted while waiting."""
        if runtime.gpus == 0:
            return True
        reported = False
        async with self._gpu_changed:
            while self._gpus_used + runtime.gpus > self.gpu_slots:
                if runtime.stop.is_set():
                    return False
                if not reported:
                    reported = True
                    ps.set_condition(
                        runtime.status,
                        "PodScheduled",
                        "False",
                        now_rfc3339(),
                        reason="Unschedulable",
                        message=(
                            f"0/1 nodes are available: 1 Insufficient {GPU_RESOURCE}. "
                            "preemption: 0/1 nodes are available: 1 No preemption victims "
                            "found for incoming pod."
                        ),
                    )
                    runtime.status["phase"] = "Pending"
                    self._spawn(self._push(runtime))
                    self._event(
                        runtime,
                        "FailedScheduling",
                        f"0/1 nodes are available: 1 Insufficient {GPU_RESOURCE}.",
                        "Warning",
                        "default-scheduler",
                    )
                await self._gpu_changed.wait()
            if runtime.stop.is_set():
                return False
            self._gpus_used += runtime.gpus
        return True

    async def _release_gpus(self, runtime: PodRuntime) -> None:
        if runtime.gpus:
            async with self._gpu_changed:
                self._gpus_used -= runtime.gpus
                self._gpu_changed.notify_all()

    async def _lifecycle(self, runtime: PodRuntime) -> None:
        admitted = False
        try:
            admitted = await self._acquire_gpus(runtime)
            if admitted and not runtime.stop.is_set():
                await self._bind(runtime)
                await self._run_container(runtime)
            else:
                await self._finish_unstarted(runtime)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pod %s/%s: kubelet failure", runtime.namespace, runtime.name)
        finally:
            if admitted:
                await self._release_gpus(runtime)
        await self._wait_for_deletion(runtime)

    async def _bind(self, runtime: PodRuntime) -> None:
        """Assign the pod to the sandbox's node, as the scheduler does with a Binding (a merge
        patch of ``spec.nodeName`` where the API has no binding subresource). A bound pod is
        deleted gracefully: the API waits for this kubelet to confirm the process ended."""
        if (runtime.pod.get("spec") or {}).get("nodeName"):
            return
        self._event(
            runtime,
            "Scheduled",
            f"Successfully assigned {runtime.namespace}/{runtime.name} to {NODE_NAME}",
            component="default-scheduler",
        )
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": runtime.name, "namespace": runtime.namespace},
            "target": {"apiVersion": "v1", "kind": "Node", "name": NODE_NAME},
        }
        try:
            await self.api.create(runtime.path + "/binding", binding)
            return
        except ApiError as error:
            if error.status not in (404, 405):
                log.warning("pod %s: binding failed: %s", runtime.name, error)
                return
        try:
            await self.api.merge_patch(runtime.path, {"spec": {"nodeName": NODE_NAME}})
        except ApiError as error:
            log.warning("pod %s: cannot set spec.nodeName: %s", runtime.name, error)

    async def _wait_for_deletion(self, runtime: PodRuntime) -> None:
        """An ended pod stays (as on a cluster) until it is deleted; then confirm the deletion
        with grace period 0, which lets the API server remove it."""
        await runtime.stop.wait()
        if not runtime.gone and not self._closing:
            await self.api.delete(
                runtime.path, grace_period_seconds=0, preconditions_uid=runtime.uid
            )
        self.runtimes.pop(runtime.uid, None)

    async def _run_container(self, runtime: PodRuntime) -> None:
        pod = runtime.pod
        container = ps.first_container(pod)
        cname = str(container.get("name") or "")
        now = now_rfc3339()
        runtime.status.update(ps.initial_status(pod, now))
        ps.set_condition(runtime.status, "PodScheduled", "True", now)
        ps.set_condition(runtime.status, "Initialized", "True", now)
        not_ready = f"containers with unready status: [{cname}]"
        ps.set_condition(runtime.status, "Ready", "False", now, "ContainersNotReady", not_ready)
        ps.set_condition(
            runtime.status, "ContainersReady", "False", now, "ContainersNotReady", not_ready
        )
        runtime.status["containerStatuses"] = [
            ps.container_status(container, ps.waiting("ContainerCreating"))
        ]
        await self._push(runtime)

        env = await self._resolve_env(runtime, container)
        if env is None:
            await self._finish_unstarted(runtime)
            return
        argv = [expand(str(part), env) for part in (container.get("command") or [])]
        argv += [expand(str(part), env) for part in (container.get("args") or [])]
        if not container.get("command"):
            await self._start_error(
                runtime,
                container,
                "the sandbox pulls no images: the container needs a command to run locally",
            )
            return
        executable = find_executable(argv[0], env.get("PATH", default_path()))
        if executable is None:
            await self._start_error(
                runtime,
                container,
                "failed to create containerd task: failed to create shim task: OCI runtime "
                "create failed: runc create failed: unable to start container process: "
                f'exec: "{argv[0]}": executable file not found in $PATH: unknown',
            )
            return
        cwd = str(container.get("workingDir") or os.getcwd())
        restart_policy = str((pod.get("spec") or {}).get("restartPolicy") or "Always")
        restarts = 0
        last_state: JsonObject = {}
        while True:
            code = await self._run_once(
                runtime, container, [executable, *argv[1:]], env, cwd, restarts, last_state
            )
            if code is None:
                return
            restart = restart_policy == "Always" or (restart_policy == "OnFailure" and code != 0)
            if not restart or runtime.stop.is_set():
                self._mark_ended(runtime, "Succeeded" if code == 0 else "Failed", now_rfc3339())
                await self._push(runtime)
                return
            # Restart in place, as the kubelet does for OnFailure/Always, after a back-off.
            restarts += 1
            last_state = runtime.status["containerStatuses"][0]["state"]
            delay = min(RESTART_BACKOFF_CAP, RESTART_BACKOFF_BASE * 2 ** (restarts - 1))
            message = (
                f"back-off {delay:g}s restarting failed container={cname} "
                f"pod={runtime.name}_{runtime.namespace}({runtime.uid})"
            )
            status = ps.container_status(container, ps.waiting("CrashLoopBackOff", message))
            status.update({"restartCount": restarts, "lastState": last_state})
            runtime.status["containerStatuses"] = [status]
            await self._push(runtime)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(runtime.stop.wait(), timeout=delay)
            if runtime.stop.is_set():
                self._mark_ended(runtime, "Failed" if code else "Succeeded", now_rfc3339())
                await self._push(runtime)
                return

    async def _run_once(
        self,
        runtime: PodRuntime,
        container: JsonObject,
        argv: list[str],
        env: dict[str, str],
        cwd: str,
        restarts: int,
        last_state: JsonObject,
    ) -> int | None:
        """Run the container's process once; its exit code (None if it could not start, the
        pod then being Failed with the reason)."""
        cname = str(container.get("name") or "")

        def sink(data: bytes) -> None:
            self.log_sink(runtime.namespace, runtime.name, cname, data)

        cores = self._exclusive_cpus(runtime, container)
        try:
            process = await ContainerProcess.start(argv, env, cwd, sink, cores)
        except OSError as error:
            self._release_cpus(runtime)
            await self._start_error(runtime, container, f"failed to start container: {error}")
            return None
        try:
            return await self._supervise(runtime, container, process, restarts, last_state)
        finally:
            self._release_cpus(runtime)

    def _exclusive_cpus(self, runtime: PodRuntime, container: JsonObject) -> frozenset[int] | None:
        count = whole_cpus(container)
        if self.cpus is None or count is None:
            return None
        cores = self.cpus.acquire(runtime.uid, count)
        if cores is None:
            log.info("pod %s: not %d free core(s) to pin; shares them", runtime.name, count)
        return cores

    def _release_cpus(self, runtime: PodRuntime) -> None:
        if self.cpus is not None:
            self.cpus.release(runtime.uid)

    async def _supervise(
        self,
        runtime: PodRuntime,
        container: JsonObject,
        process: ContainerProcess,
        restarts: int,
        last_state: JsonObject,
    ) -> int:
        """Report the started container, wait for it to exit (or stop it), report the end."""
        cname = str(container.get("name") or "")
        runtime.process = process
        self._event(runtime, "Started", f"Started container {cname}")
        started = now_rfc3339()
        container_id = f"sandbox://{process.pid}"
        runtime.status["phase"] = "Running"
        runtime.status["podIP"] = ps.HOST_IP
        runtime.status["podIPs"] = [{"ip": ps.HOST_IP}]

        def with_history(status: JsonObject) -> JsonObject:
            status.update({"restartCount": restarts, "lastState": last_state})
            return status

        runtime.status["containerStatuses"] = [
            with_history(
                ps.container_status(
                    container, {"running": {"startedAt": started}}, True, container_id
                )
            )
        ]
        ps.set_condition(runtime.status, "PodReadyToStartContainers", "True", started)
        ps.set_condition(runtime.status, "ContainersReady", "True", started)
        ps.set_condition(runtime.status, "Ready", "True", started)
        # A kill requested before the process existed applies now.
        self._apply_controls(runtime)
        await self._push(runtime)

        exited = asyncio.create_task(process.wait())
        stopping = asyncio.create_task(runtime.stop.wait())
        await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not exited.done():
            grace = self.shutdown_grace if self._closing else grace_seconds(runtime.pod)
            self._event(runtime, "Killing", f"Stopping container {cname}")
            await process.terminate(grace)
        stopping.cancel()
        code = await exited
        runtime.process = None
        finished = now_rfc3339()
        state = ps.terminated(
            code, "Completed" if code == 0 else "Error", started, finished, "", container_id
        )
        runtime.status["containerStatuses"] = [
            with_history(ps.container_status(container, state, False, container_id))
        ]
        not_ready = f"containers with unready status: [{cname}]"
        ps.set_condition(
            runtime.status, "Ready", "False", finished, "ContainersNotReady", not_ready
        )
        ps.set_condition(
            runtime.status, "ContainersReady", "False", finished, "ContainersNotReady", not_ready
        )
        return code

    async def _resolve_env(
        self, runtime: PodRuntime, container: JsonObject
    ) -> dict[str, str] | None:
        """The container's env; a missing Secret/ConfigMap keeps the container waiting in
        CreateContainerConfigError and is retried, as the kubelet does."""
        pod = runtime.pod
        hostname = str((pod.get("spec") or {}).get("hostname") or runtime.name)
        last_error = ""
        while not runtime.stop.is_set():
            try:
                return await self.resolver.resolve(pod, container, base_environment(hostname))
            except EnvError as error:
                if str(error) != last_error:
                    last_error = str(error)
                    self._event(runtime, "Failed", f"Error: {last_error}", "Warning")
                    runtime.status["containerStatuses"] = [
                        ps.container_status(
                            container, ps.waiting("CreateContainerConfigError", last_error)
                        )
                    ]
                    await self._push(runtime)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(runtime.stop.wait(), timeout=CONFIG_RETRY_SECONDS)
        return None

    async def _start_error(self, runtime: PodRuntime, container: JsonObject, message: str) -> None:
        self._event(runtime, "Failed", f"Error: {message}", "Warning")
        now = now_rfc3339()
        state = ps.terminated(128, "StartError", "1970-01-01T00:00:00Z", now, message)
        runtime.status["containerStatuses"] = [ps.container_status(container, state)]
        self._mark_ended(runtime, "Failed", now)
        await self._push(runtime)

    async def _finish_unstarted(self, runtime: PodRuntime) -> None:
        """A pod deleted before its container ran ends Failed, like on a cluster."""
        if runtime.status.get("phase") in ("Succeeded", "Failed"):
            return
        now = now_rfc3339()
        container = ps.first_container(runtime.pod)
        state = ps.terminated(
            137,
            "ContainerStatusUnknown",
            now,
            now,
            "The container could not be located when the pod was terminated",
        )
        runtime.status.setdefault("conditions", [])
        runtime.status["containerStatuses"] = [ps.container_status(container, state)]
        self._mark_ended(runtime, "Failed", now)
        await self._push(runtime)

    def _mark_ended(self, runtime: PodRuntime, phase: str, now: str) -> None:
        runtime.status["phase"] = phase
        for kind in ("Ready", "ContainersReady"):
            ps.set_condition(runtime.status, kind, "False", now, "PodCompleted")
        if any(c["type"] == "PodReadyToStartContainers" for c in runtime.status["conditions"]):
            ps.set_condition(runtime.status, "PodReadyToStartContainers", "False", now)
