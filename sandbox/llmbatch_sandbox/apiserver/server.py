"""``ApiServer``: the emulator's lifecycle (aiohttp on one port) and the in-process hooks the
kubelet and the chaos tests use."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from llmbatch_sandbox.apiserver.faults import Faults
from llmbatch_sandbox.apiserver.gc import GarbageCollector
from llmbatch_sandbox.apiserver.logs import PodLogs
from llmbatch_sandbox.apiserver.objects import NAMESPACE_STORAGE, Objects
from llmbatch_sandbox.apiserver.resources import Registry
from llmbatch_sandbox.apiserver.routes import Routes
from llmbatch_sandbox.apiserver.store import Store, Subscriber
from llmbatch_sandbox.apiserver.watch import WatchStream

INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class ApiServer:
    """A Kubernetes API emulator on ``host:port`` (0: a free port), plain HTTP, no auth.

    ``history_size`` bounds the change history watches resume from (older: 410 Gone);
    ``bookmark_interval`` is how often watches that allow bookmarks get one.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        history_size: int = 10000,
        bookmark_interval: float = 30.0,
        access_log: bool = False,
    ) -> None:
        self.access_log = access_log
        self.host = host
        self.port = port
        self.url = ""
        self.bookmark_interval = bookmark_interval
        self.store = Store(history_size)
        self.registry = Registry()
        self.objects = Objects(self.store, self.registry)
        self.logs = PodLogs()
        self.faults = Faults()
        self.watches: set[WatchStream] = set()
        self.log_followers: set[Subscriber] = set()
        self._gc: GarbageCollector | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        self.logs.bind(asyncio.get_running_loop())
        self.store.on_change.append(self._forget_logs)
        self._gc = GarbageCollector(self.objects)
        self._gc.start()
        ns_type = self.registry.by_storage(NAMESPACE_STORAGE)[0]
        for name in INITIAL_NAMESPACES:
            if self.store.get(NAMESPACE_STORAGE, "", name) is None:
                self.objects.create(ns_type, "", {"metadata": {"name": name}})
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", Routes(self).handle)
        self._runner = web.AppRunner(
            app,
            access_log=logging.getLogger("llmbatch.apiserver.access") if self.access_log else None,
            shutdown_timeout=1.0,
            handle_signals=False,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1]) if sockets else self.port
        self.url = f"http://{self.host}:{self.port}"
        return self.url

    async def stop(self) -> None:
        self.close_watches()
        for sub in list(self.log_followers):
            sub.close()
        if self._gc is not None:
            await self._gc.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- hooks for the kubelet and the chaos tests -----------------------------------------
    def append_pod_log(
        self, namespace: str, name: str, data: bytes, container: str | None = None
    ) -> None:
        """Append container output to a pod's log (thread-safe). ``container`` defaults to
        the pod's first container."""
        if container is None:
            pod = self.store.get(("", "pods"), namespace, name) or {}
            containers = (pod.get("spec") or {}).get("containers") or [{}]
            container = str(containers[0].get("name", ""))
        self.logs.append(namespace, name, container, data)

    def close_watches(self, resource: str | None = None) -> int:
        """End open watch streams (all, or those on one plural); clients must re-watch."""
        closing = [w for w in self.watches if resource in (None, w.req.rt.plural)]
        for watch in closing:
            watch.close()
        return len(closing)

    def expire_history(self) -> None:
        """Forget the change history: watches resuming from any older version get 410."""
        self.store.compact()

    def _forget_logs(self, change: Any) -> None:
        if change.type == "DELETED" and change.storage == ("", "pods"):
            md = change.obj["metadata"]
            self.logs.forget(md.get("namespace", ""), md["name"])

    def kubeconfig(self, namespace: str = "default") -> str:
        return kubeconfig_yaml(self.url, namespace)


def kubeconfig_yaml(url: str, namespace: str = "default", name: str = "llmbatch-sandbox") -> str:
    """A kubeconfig for plain-http ``url``; kubectl accepts it without credentials."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": url}}],
        "users": [{"name": name, "user": {"token": "sandbox"}}],
        "contexts": [
            {"name": name, "context": {"cluster": name, "user": name, "namespace": namespace}}
        ],
        "current-context": name,
        "preferences": {},
    }
    return yaml.safe_dump(config, sort_keys=False)


def write_kubeconfig(url: str, path: Path, namespace: str = "default") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(kubeconfig_yaml(url, namespace))
    return path
