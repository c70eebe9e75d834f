"""The controllers that finish deletions, as kube-controller-manager and apiextensions do:
ownerReference garbage collection (background, foreground, orphan), namespace cleanup and
removal of a deleted CRD's instances. One sweep runs after writes, until nothing changes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from llmbatch_sandbox.apiserver.crds import CRD_CLEANUP_FINALIZER
from llmbatch_sandbox.apiserver.errors import ApiError
from llmbatch_sandbox.apiserver.objects import (
    CRD_STORAGE,
    FOREGROUND,
    NAMESPACE_STORAGE,
    ORPHAN,
    Objects,
)
from llmbatch_sandbox.apiserver.resources import ResourceType
from llmbatch_sandbox.apiserver.store import Change

JSON = dict[str, Any]
log = logging.getLogger(__name__)


class GarbageCollector:
    def __init__(self, objects: Objects) -> None:
        self.objects = objects
        self.store = objects.store
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.store.on_change.append(self._maybe_wake)

    def _maybe_wake(self, change: Change) -> None:
        """Sweep only after changes that can leave work: a removal (dependents may now be
        orphans), a deletion in progress, or an object with owners (they may be gone)."""
        md = change.obj.get("metadata") or {}
        if change.type == "DELETED" or md.get("deletionTimestamp") or md.get("ownerReferences"):
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                self.sweep()
            except Exception:  # a bug here must not stop later sweeps
                log.exception("garbage collection sweep failed")
            await asyncio.sleep(0)

    # -- one pass --------------------------------------------------------------------------
    def _rt(self, storage: tuple[str, str]) -> ResourceType | None:
        types = self.objects.registry.by_storage(storage)
        if not types:
            return None
        # Prefer the type whose group owns the storage (core events over events.k8s.io).
        types.sort(key=lambda rt: rt.group != storage[0])
        return types[0]

    def _delete(self, storage: tuple[str, str], obj: JSON, policy: str = "Background") -> None:
        rt = self._rt(storage)
        if rt is None:
            return
        md = obj["metadata"]
        try:
            self.objects.delete(
                rt, md.get("namespace", ""), md["name"], {"propagationPolicy": policy}
            )
        except ApiError as exc:
            if exc.code != 404:
                raise

    def _drop_finalizer(self, storage: tuple[str, str], obj: JSON, finalizer: str) -> None:
        rt = self._rt(storage)
        if rt is None:
            return
        current = self.store.get(
            storage, obj["metadata"].get("namespace", ""), obj["metadata"]["name"]
        )
        if current is None:
            return
        md = current["metadata"]
        remaining = [f for f in md.get("finalizers") or [] if f != finalizer]
        patch = {
            "metadata": {"finalizers": remaining or None, "resourceVersion": md["resourceVersion"]}
        }
        self.objects.patch(
            rt, md.get("namespace", ""), md["name"], "application/merge-patch+json", patch, None
        )

    def sweep(self) -> None:
        everything = self.store.all_objects()
        uids = {o["metadata"].get("uid"): (s, o) for s, o in everything}
        dependents: dict[str, list[tuple[tuple[str, str], JSON]]] = {}
        for storage, obj in everything:
            for ref in obj["metadata"].get("ownerReferences") or []:
                dependents.setdefault(ref.get("uid", ""), []).append((storage, obj))
        for storage, obj in everything:
            try:
                self._collect(storage, obj, uids, dependents)
            except ApiError as exc:  # one object's trouble must not stop the others
                log.warning("garbage collection of %s: %s", obj["metadata"].get("name"), exc)

    def _collect(
        self,
        storage: tuple[str, str],
        obj: JSON,
        uids: dict[Any, tuple[tuple[str, str], JSON]],
        dependents: dict[str, list[tuple[tuple[str, str], JSON]]],
    ) -> None:
        md = obj["metadata"]
        if not self.store.exists(storage, md.get("namespace", ""), md["name"]):
            return  # removed earlier in this sweep
        if md.get("deletionTimestamp"):
            self._finish_deletion(storage, obj, dependents.get(md.get("uid", ""), []))
        refs = md.get("ownerReferences") or []
        if refs and not md.get("deletionTimestamp"):
            owners = [uids.get(r.get("uid")) for r in refs]
            if all(o is None for o in owners):
                self._delete(storage, obj)
            elif any(
                o is not None
                and FOREGROUND in (o[1]["metadata"].get("finalizers") or [])
                and o[1]["metadata"].get("deletionTimestamp")
                for o in owners
            ):
                self._delete(storage, obj, "Foreground")

    def _finish_deletion(
        self, storage: tuple[str, str], obj: JSON, deps: list[tuple[tuple[str, str], JSON]]
    ) -> None:
        md = obj["metadata"]
        finalizers = md.get("finalizers") or []
        if ORPHAN in finalizers:
            for dep_storage, dep in deps:
                self._orphan(dep_storage, dep, md["uid"])
            self._drop_finalizer(storage, obj, ORPHAN)
            return
        if FOREGROUND in finalizers:
            blocking = False
            for dep_storage, dep in deps:
                current = self.store.get(
                    dep_storage, dep["metadata"].get("namespace", ""), dep["metadata"]["name"]
                )
                if current is None:
                    continue
                if not current["metadata"].get("deletionTimestamp"):
                    self._delete(dep_storage, current, "Foreground")
                refs = [
                    r
                    for r in current["metadata"].get("ownerReferences") or []
                    if r.get("uid") == md["uid"]
                ]
                still = self.store.get(
                    dep_storage, dep["metadata"].get("namespace", ""), dep["metadata"]["name"]
                )
                if still is not None and any(r.get("blockOwnerDeletion") for r in refs):
                    blocking = True
            if not blocking:
                self._drop_finalizer(storage, obj, FOREGROUND)
            return
        if storage == NAMESPACE_STORAGE:
            self._finish_namespace(obj)
        elif storage == CRD_STORAGE and CRD_CLEANUP_FINALIZER in finalizers:
            self._finish_crd(obj)

    def _orphan(self, storage: tuple[str, str], dep: JSON, owner_uid: str) -> None:
        rt = self._rt(storage)
        current = self.store.get(
            storage, dep["metadata"].get("namespace", ""), dep["metadata"]["name"]
        )
        if rt is None or current is None:
            return
        refs = [
            r for r in current["metadata"].get("ownerReferences") or [] if r.get("uid") != owner_uid
        ]
        patch = {"metadata": {"ownerReferences": refs or None}}
        self.objects.patch(
            rt,
            current["metadata"].get("namespace", ""),
            current["metadata"]["name"],
            "application/merge-patch+json",
            patch,
            None,
        )

    def _finish_namespace(self, ns_obj: JSON) -> None:
        name = ns_obj["metadata"]["name"]
        left = False
        for storage in self.store.storages():
            rt = self._rt(storage)
            if rt is None or not rt.namespaced:
                continue
            for obj in self.store.items(storage, name):
                left = True
                if not obj["metadata"].get("deletionTimestamp"):
                    self._delete(storage, obj)
        if left:
            return
        current = self.store.get(NAMESPACE_STORAGE, "", name)
        if current is None:
            return
        if (current.get("spec") or {}).get("finalizers"):
            current["spec"]["finalizers"] = []
            current = self.store.put(NAMESPACE_STORAGE, current)
        if not current["metadata"].get("finalizers"):
            self.objects.remove_now(NAMESPACE_STORAGE, current)

    def _finish_crd(self, crd: JSON) -> None:
        spec = crd.get("spec") or {}
        storage = (str(spec.get("group", "")), str((spec.get("names") or {}).get("plural", "")))
        instances = self.store.items(storage)
        for obj in instances:
            if not obj["metadata"].get("deletionTimestamp"):
                self._delete(storage, obj)
        if not self.store.items(storage):
            self._drop_finalizer(CRD_STORAGE, crd, CRD_CLEANUP_FINALIZER)
