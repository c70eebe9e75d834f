"""Create, read, update, patch and delete with Kubernetes' semantics, on parsed objects (the
HTTP layer is routes.py): generateName, optimistic concurrency, status isolation, generation,
custom resource schemas, finalizers and graceful deletion."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any

from llmbatch_sandbox.apiserver import cel, kinds, meta, pods, schema
from llmbatch_sandbox.apiserver.conversion import to_storage, to_version
from llmbatch_sandbox.apiserver.errors import (
    ApiError,
    FieldError,
    already_exists,
    bad_request,
    conflict,
    invalid,
    not_found,
)
from llmbatch_sandbox.apiserver.patch import apply_patch
from llmbatch_sandbox.apiserver.resources import Registry, ResourceType, crd_resource_types
from llmbatch_sandbox.apiserver.selectors import Filter
from llmbatch_sandbox.apiserver.store import Store

JSON = dict[str, Any]

# Per request: the warnings the HTTP layer sends as ``Warning`` headers (None outside a
# request), and whether dropped unknown fields are among them (fieldValidation=Warn, the
# default).
WARNINGS: ContextVar[list[str] | None] = ContextVar("warnings", default=None)
WARN_UNKNOWN_FIELDS: ContextVar[bool] = ContextVar("warn_unknown_fields", default=False)

JOB_ORPHAN_WARNING = (
    "child pods are preserved by default when jobs are deleted; set "
    "propagationPolicy=Background to remove them or set propagationPolicy=Orphan to suppress "
    "this warning"
)


def warn(text: str) -> None:
    warnings = WARNINGS.get()
    if warnings is not None:
        warnings.append(text)


ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"
CRD_STORAGE = ("apiextensions.k8s.io", "customresourcedefinitions")
NAMESPACE_STORAGE = ("", "namespaces")
# Read-only metadata a client cannot change by writing the object.
_SYSTEM_META = (
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "namespace",
    "name",
    "selfLink",
)


class Objects:
    def __init__(self, store: Store, registry: Registry) -> None:
        self.store = store
        self.registry = registry
        self.on_write: list[Callable[[], None]] = []

    # -- helpers ---------------------------------------------------------------------------
    def render(self, rt: ResourceType, obj: JSON) -> JSON:
        return to_version(rt, obj)

    def _fetch(self, rt: ResourceType, ns: str, name: str) -> JSON:
        obj = self.store.get(rt.storage, ns, name)
        if obj is None:
            raise not_found(rt.plural, name, rt.group)
        return obj

    def _check_body(self, rt: ResourceType, body: Any) -> JSON:
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON or YAML object")
        api_version, kind = body.get("apiVersion"), body.get("kind")
        for field, value in (("apiVersion", api_version), ("kind", kind)):
            # The API server decodes these into strings: anything else cannot be decoded.
            if value is not None and not isinstance(value, str):
                raise bad_request(f"{field} must be a string, not {type(value).__name__}")
        if api_version and api_version != rt.api_version:
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({rt.api_version})"
            )
        if kind and kind != rt.kind:
            raise bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})"
            )
        if "metadata" in body and not isinstance(body["metadata"], dict):
            raise bad_request("metadata must be an object")
        return to_storage(rt, body)

    def _invalid(self, rt: ResourceType, name: str, errors: list[FieldError]) -> ApiError:
        return invalid(rt.kind, rt.group, name, errors)

    def _check_namespace(self, rt: ResourceType, ns: str) -> None:
        if not rt.namespaced:
            return
        namespace = self.store.get(NAMESPACE_STORAGE, "", ns)
        if namespace is None:
            raise not_found("namespaces", ns)
        if namespace["metadata"].get("deletionTimestamp"):
            raise ApiError(
                403,
                f'{rt.plural} "{ns}" is forbidden: unable to create new content in namespace '
                f"{ns} because it is being terminated",
                details={"name": ns, "kind": rt.plural},
            )

    def _schema_pipeline(
        self, rt: ResourceType, obj: JSON, old: JSON | None, strict: bool = False
    ) -> JSON:
        """Prune, default, validate: the order apiextensions-apiserver uses. With ``strict``
        (fieldValidation=Strict, as kubectl sends) unknown fields are a 400, not pruned."""
        name = obj["metadata"].get("name", "")
        errors = meta.validate_labels(obj["metadata"]) + meta.validate_shape(obj["metadata"])
        if rt.custom and rt.schema is not None:
            dropped: list[str] = []
            obj = schema.prune(obj, rt.schema, root=True, dropped=dropped)
            if dropped and not strict and WARN_UNKNOWN_FIELDS.get():
                for path in dropped:
                    warn(f'unknown field "{path}"')
            if strict and dropped:
                unknown = ", ".join(f'unknown field "{p}"' for p in dropped)
                raise bad_request(
                    f'{rt.kind} in version "{rt.version}" cannot be handled as a '
                    f"{rt.kind}: strict decoding error: {unknown}"
                )
            obj = schema.apply_defaults(obj, rt.schema)
            errors += schema.validate(obj, rt.schema)
            if not errors:
                errors += cel.check(obj, rt.schema, old if old is not None else cel.MISSING)
        errors += kinds.validate(rt, obj, old)
        if errors:
            raise self._invalid(rt, name, errors)
        return obj

    def _notify(self) -> None:
        for callback in self.on_write:
            callback()

    # -- reads -----------------------------------------------------------------------------
    def get(self, rt: ResourceType, ns: str, name: str) -> JSON:
        return self.render(rt, self._fetch(rt, ns, name))

    def list_objects(
        self, rt: ResourceType, flt: Filter, limit: int | None, token: str | None
    ) -> tuple[list[JSON], JSON]:
        start: tuple[str, str] | None = None
        if token:
            try:
                decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
                start = (str(decoded["ns"]), str(decoded["name"]))
            except (ValueError, KeyError, TypeError):
                raise bad_request(f"continue key is not valid: {token!r}") from None
        items = [o for o in self.store.items(rt.storage, flt.namespace) if flt.matches(o)]
        if start is not None:
            items = [
                o
                for o in items
                if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > start
            ]
        list_meta: JSON = {"resourceVersion": str(self.store.rv)}
        if limit and limit > 0 and len(items) > limit:
            last = items[limit - 1]["metadata"]
            list_meta["continue"] = base64.urlsafe_b64encode(
                json.dumps({"ns": last.get("namespace", ""), "name": last["name"]}).encode()
            ).decode()
            list_meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        return [self.render(rt, o) for o in items], list_meta

    # -- create ----------------------------------------------------------------------------
    def create(
        self, rt: ResourceType, ns: str, body: Any, dry_run: bool = False, strict: bool = False
    ) -> JSON:
        obj = self._check_body(rt, body)
        metadata = obj.setdefault("metadata", {})
        body_ns = metadata.get("namespace")
        if rt.namespaced:
            if body_ns and body_ns != ns:
                raise bad_request(
                    "the namespace of the provided object does not match the "
                    "namespace sent on the request"
                )
            metadata["namespace"] = ns
        else:
            metadata.pop("namespace", None)
        name = metadata.get("name")
        generated = False
        if not name:
            prefix = metadata.get("generateName")
            if not prefix:
                raise self._invalid(
                    rt,
                    "",
                    [
                        FieldError(
                            "metadata.name",
                            "FieldValueRequired",
                            "Required value: name or generateName is required",
                        )
                    ],
                )
            generated = True
            name = meta.generate_name(str(prefix))
            metadata["name"] = name
        errors = meta.validate_name(str(name), rt.plural)
        if errors:
            raise self._invalid(rt, str(name), errors)
        self._check_namespace(rt, ns)
        for key in (
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
            "managedFields",
        ):
            metadata.pop(key, None)
        metadata["uid"] = meta.new_uid()
        metadata["creationTimestamp"] = meta.now()
        metadata["generation"] = 1
        if rt.has_status and rt.custom:
            obj.pop("status", None)
        kinds.prepare_create(rt, obj)
        obj = self._schema_pipeline(rt, obj, None, strict)
        for _ in range(8):
            if (
                self.store.get(rt.storage, metadata.get("namespace", ""), obj["metadata"]["name"])
                is None
            ):
                break
            if not generated:
                raise already_exists(rt.plural, str(name), rt.group)
            obj["metadata"]["name"] = meta.generate_name(str(metadata["generateName"]))
        else:
            raise already_exists(rt.plural, str(name), rt.group)
        if dry_run:
            return self.render(rt, obj)
        stored = self.store.put(rt.storage, obj)
        if rt.storage == CRD_STORAGE:
            self._register_crd(stored)
        self._notify()
        return self.render(rt, stored)

    def bind(self, rt: ResourceType, ns: str, name: str, body: Any) -> JSON:
        """``POST pods/<name>/binding``: the scheduler's way to set spec.nodeName."""
        if not isinstance(body, dict):
            raise bad_request("a Binding must be an object")
        pod = self._fetch(rt, ns, name)
        if pod["metadata"].get("deletionTimestamp"):
            raise ApiError(409, f"pod {name} is being deleted, cannot be assigned to a host")
        pods.bind_pod(pod, body)
        self.store.put(rt.storage, pod)
        self._notify()
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "code": 201,
        }

    # -- update ----------------------------------------------------------------------------
    def replace(
        self,
        rt: ResourceType,
        ns: str,
        name: str,
        body: Any,
        sub: str | None,
        dry_run: bool = False,
        strict: bool = False,
    ) -> JSON:
        new = self._check_body(rt, body)
        metadata = new.setdefault("metadata", {})
        if metadata.get("name") and metadata["name"] != name:
            raise bad_request(
                f"the name of the object ({metadata['name']}) does not match the "
                f"name on the URL ({name})"
            )
        if rt.namespaced and metadata.get("namespace") and metadata["namespace"] != ns:
            raise bad_request(
                "the namespace of the provided object does not match the namespace "
                "sent on the request"
            )
        old = self._fetch(rt, ns, name)
        rv = metadata.get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise conflict(rt.plural, name, rt.group)
        if not rv and rt.custom:
            raise self._invalid(
                rt,
                name,
                [
                    FieldError(
                        "metadata.resourceVersion",
                        "FieldValueInvalid",
                        "Invalid value: 0x0: must be specified for an update",
                    )
                ],
            )
        return self._update(rt, old, new, sub, dry_run, strict)

    def patch(
        self,
        rt: ResourceType,
        ns: str,
        name: str,
        content_type: str,
        patch: Any,
        sub: str | None,
        dry_run: bool = False,
        strict: bool = False,
    ) -> JSON:
        old = self._fetch(rt, ns, name)
        current = self.render(rt, old)
        patched = apply_patch(content_type, current, patch, custom=rt.custom)
        if not isinstance(patched, dict):
            raise bad_request("the patch did not produce an object")
        raw_meta = patched.get("metadata")
        patched_meta: JSON = raw_meta if isinstance(raw_meta, dict) else {}
        rv = patched_meta.get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise conflict(rt.plural, name, rt.group)
        if patched_meta.get("name", name) != name:
            raise bad_request(
                f"the name of the object ({patched_meta.get('name')}) does not "
                f"match the name on the URL ({name})"
            )
        return self._update(rt, old, self._check_body(rt, patched), sub, dry_run, strict)

    def apply(
        self,
        rt: ResourceType,
        ns: str,
        name: str,
        body: Any,
        sub: str | None,
        dry_run: bool,
        strict: bool = False,
    ) -> tuple[JSON, bool]:
        """Server-side apply, approximated: create when missing, else a merge patch. Field
        ownership is not tracked, so fields dropped from a later apply are not removed."""
        if not isinstance(body, dict):
            raise bad_request("an apply patch must be an object")
        raw_meta = body.get("metadata")
        body_meta: JSON = raw_meta if isinstance(raw_meta, dict) else {}
        if body_meta.get("name", name) != name:
            raise bad_request(
                f"the name of the object ({body_meta.get('name')}) does not match "
                f"the name on the URL ({name})"
            )
        if self.store.get(rt.storage, ns if rt.namespaced else "", name) is None:
            if sub is not None:
                raise not_found(rt.plural, name, rt.group)
            fresh = {**body, "metadata": {**body_meta, "name": name}}
            return self.create(rt, ns, fresh, dry_run, strict), True
        merged = self.patch(
            rt, ns, name, "application/merge-patch+json", body, sub, dry_run, strict
        )
        return merged, False

    def _update(
        self,
        rt: ResourceType,
        old: JSON,
        new: JSON,
        sub: str | None,
        dry_run: bool,
        strict: bool = False,
    ) -> JSON:
        old_meta = old["metadata"]
        if sub == "status":
            result = copy.deepcopy(old)
            if "status" in new:
                result["status"] = new["status"]
            else:
                result.pop("status", None)
        else:
            result = new
            result_meta = result.setdefault("metadata", {})
            for key in _SYSTEM_META:
                if key in old_meta:
                    result_meta[key] = old_meta[key]
                else:
                    result_meta.pop(key, None)
            result_meta.pop("managedFields", None)
            if rt.has_status:
                if "status" in old:
                    result["status"] = copy.deepcopy(old["status"])
                else:
                    result.pop("status", None)
            kinds.prepare_update(rt, old, result)
        result["metadata"]["resourceVersion"] = old_meta["resourceVersion"]
        name = str(old_meta["name"])
        if not isinstance(result.get("metadata"), dict):
            raise bad_request("metadata must be an object")
        if old_meta.get("deletionTimestamp") and isinstance(
            result["metadata"].get("finalizers") or [], list
        ):
            added = {str(f) for f in result["metadata"].get("finalizers") or []} - set(
                old_meta.get("finalizers") or []
            )
            if added:
                raise self._invalid(
                    rt,
                    name,
                    [
                        FieldError(
                            "metadata.finalizers",
                            "FieldValueForbidden",
                            "Forbidden: no new finalizers can be added if the object is being "
                            "deleted, "
                            f"found new finalizers {sorted(added)!r}",
                        )
                    ],
                )
        result = self._schema_pipeline(rt, result, old, strict)
        # Stored in the version it was first written in (one storage version per resource).
        result["apiVersion"] = old.get("apiVersion", result.get("apiVersion"))
        if self._spec_changed(rt, old, result):
            result["metadata"]["generation"] = int(old_meta.get("generation") or 1) + 1
        if result == old:
            return self.render(rt, old)
        if dry_run:
            return self.render(rt, result)
        if self._deletion_complete(result["metadata"]):
            final = self._remove(rt, result)
            return self.render(rt, final)
        stored = self.store.put(rt.storage, result)
        if rt.storage == CRD_STORAGE:
            self._register_crd(stored)
        self._notify()
        return self.render(rt, stored)

    @staticmethod
    def _deletion_complete(metadata: JSON) -> bool:
        """Deleting, no finalizer left and no grace period still running (a pod's kubelet
        confirms with a grace-0 delete): the object can go."""
        return bool(
            metadata.get("deletionTimestamp")
            and not metadata.get("finalizers")
            and not metadata.get("deletionGracePeriodSeconds")
        )

    @staticmethod
    def _spec_changed(rt: ResourceType, old: JSON, new: JSON) -> bool:
        ignored = {"metadata", "status"} if rt.has_status or not rt.custom else {"metadata"}
        ignored |= {"apiVersion", "kind"}

        def body(o: JSON) -> JSON:
            return {k: v for k, v in o.items() if k not in ignored}

        return body(old) != body(new)

    # -- delete ----------------------------------------------------------------------------
    def delete(
        self, rt: ResourceType, ns: str, name: str, options: JSON, dry_run: bool = False
    ) -> JSON:
        obj = self._fetch(rt, ns, name)
        metadata = obj["metadata"]
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != metadata.get("uid"):
            raise ApiError(
                409,
                f"Precondition failed: UID in precondition: {pre['uid']}, UID in "
                f"object meta: {metadata.get('uid')}",
                details={"name": name, "group": rt.group, "kind": rt.plural},
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != metadata["resourceVersion"]:
            raise conflict(rt.plural, name, rt.group)
        policy = options.get("propagationPolicy")
        if policy is None and options.get("orphanDependents") is not None:
            policy = "Orphan" if options["orphanDependents"] else "Background"
        if policy is None and rt.storage == ("batch", "jobs") and rt.version == "v1":
            policy = "Orphan"  # batch/v1 Jobs default to orphaning pods, as in Kubernetes
            warn(JOB_ORPHAN_WARNING)
        if policy not in (None, "Orphan", "Foreground", "Background"):
            raise bad_request(f"unsupported propagation policy {policy!r}")
        if dry_run:
            return self.render(rt, obj)
        finalizers: list[str] = list(metadata.get("finalizers") or [])
        if policy == "Orphan" and ORPHAN not in finalizers:
            finalizers.append(ORPHAN)
        if policy == "Foreground" and FOREGROUND not in finalizers:
            finalizers.append(FOREGROUND)
        if rt.storage == NAMESPACE_STORAGE:
            return self._delete_namespace(rt, obj)
        grace = self._grace_period(rt, obj, options)
        if grace > 0:
            if metadata.get("deletionTimestamp"):
                return self.render(rt, obj)  # already terminating: the kubelet finishes it
            deadline = datetime.now(UTC) + timedelta(seconds=grace)
            metadata["deletionTimestamp"] = deadline.strftime("%Y-%m-%dT%H:%M:%SZ")
            metadata["deletionGracePeriodSeconds"] = grace
            metadata["finalizers"] = finalizers
            if not finalizers:
                metadata.pop("finalizers")
            stored = self.store.put(rt.storage, obj)
            self._notify()
            return self.render(rt, stored)
        if finalizers:
            changed = finalizers != list(metadata.get("finalizers") or [])
            if not metadata.get("deletionTimestamp"):
                metadata["deletionTimestamp"] = meta.now()
                changed = True
            if metadata.get("deletionGracePeriodSeconds") != 0:
                # Grace is over (or never was): the finalizers alone now hold the object.
                metadata["deletionGracePeriodSeconds"] = 0
                changed = True
            if changed:
                metadata["finalizers"] = finalizers
                obj = self.store.put(rt.storage, obj)
                self._notify()
            return self.render(rt, obj)
        return self.render(rt, self._remove(rt, obj))

    def _grace_period(self, rt: ResourceType, obj: JSON, options: JSON) -> int:
        """Pods bound to a node wait for the kubelet (grace > 0); everything else goes now."""
        if rt.storage != ("", "pods"):
            return 0
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            return 0
        grace = options.get("gracePeriodSeconds")
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", 30)
        current = obj["metadata"].get("deletionGracePeriodSeconds")
        if obj["metadata"].get("deletionTimestamp") and grace != 0:
            return int(current or 0) if current is not None else int(grace)
        return int(grace)

    def _delete_namespace(self, rt: ResourceType, obj: JSON) -> JSON:
        if obj["metadata"].get("deletionTimestamp"):
            return self.render(rt, obj)
        obj["metadata"]["deletionTimestamp"] = meta.now()
        obj["metadata"]["deletionGracePeriodSeconds"] = 0
        obj.setdefault("status", {})["phase"] = "Terminating"
        stored = self.store.put(rt.storage, obj)
        self._notify()
        return self.render(rt, stored)

    def _remove(self, rt: ResourceType, obj: JSON) -> JSON:
        ns = obj["metadata"].get("namespace", "")
        final = self.store.remove(rt.storage, ns, obj["metadata"]["name"]) or obj
        if rt.storage == CRD_STORAGE:
            self._unregister_crd(final)
        self._notify()
        return final

    def remove_now(self, storage: tuple[str, str], obj: JSON) -> None:
        """Remove without further checks (the garbage collector's last step)."""
        types = self.registry.by_storage(storage)
        if types:
            self._remove(types[0], obj)

    def delete_collection(self, rt: ResourceType, flt: Filter, options: JSON) -> JSON:
        items = [o for o in self.store.items(rt.storage, flt.namespace) if flt.matches(o)]
        for obj in items:
            try:
                self.delete(
                    rt, obj["metadata"].get("namespace", ""), obj["metadata"]["name"], options
                )
            except ApiError as exc:
                if exc.code != 404:
                    raise
        return {
            "kind": f"{rt.kind}List",
            "apiVersion": rt.api_version,
            "metadata": {"resourceVersion": str(self.store.rv)},
            "items": [self.render(rt, o) for o in items],
        }

    # -- CRDs ------------------------------------------------------------------------------
    def _register_crd(self, crd: JSON) -> None:
        spec = crd.get("spec") or {}
        group, plural = str(spec.get("group", "")), str((spec.get("names") or {}).get("plural", ""))
        if crd["metadata"].get("deletionTimestamp"):
            return  # a terminating CRD keeps serving until its instances are gone
        self.registry.replace_custom(group, plural, crd_resource_types(crd))

    def _unregister_crd(self, crd: JSON) -> None:
        spec = crd.get("spec") or {}
        group, plural = str(spec.get("group", "")), str((spec.get("names") or {}).get("plural", ""))
        self.registry.remove_custom(group, plural)
        self.store.drop_storage((group, plural))
