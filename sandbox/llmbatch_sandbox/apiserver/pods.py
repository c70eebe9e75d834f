"""Pods as the API server treats them: defaults, the checks kubelets and schedulers rely on,
the immutable spec and the binding subresource."""

from __future__ import annotations

from typing import Any

from llmbatch_sandbox.apiserver.errors import ApiError, FieldError, go_value

JSON = dict[str, Any]


def _container_defaults(container: JSON) -> None:
    image = str(container.get("image", ""))
    tag = image.rsplit("/", 1)[-1]
    latest = ":" not in tag or tag.endswith(":latest")
    container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("resources", {})
    for port in container.get("ports") or []:
        port.setdefault("protocol", "TCP")


def pod_spec_defaults(spec: JSON, restart_policy: str = "Always") -> None:
    spec.setdefault("restartPolicy", restart_policy)
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if isinstance(container, dict):
            _container_defaults(container)


def pod_defaults(obj: JSON) -> None:
    pod_spec_defaults(obj.setdefault("spec", {}))
    obj["status"] = {"phase": "Pending", "qosClass": _qos(obj["spec"])}


def _qos(spec: JSON) -> str:
    resources = [c.get("resources") or {} for c in spec.get("containers") or []]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    if all(
        r.get("limits") and (r.get("requests") or r["limits"]) == r["limits"] for r in resources
    ):
        return "Guaranteed"
    return "Burstable"


def pod_spec_errors(spec: Any, path: str) -> list[FieldError]:
    if not isinstance(spec, dict):
        return [FieldError(path, "FieldValueRequired", "Required value")]
    containers = spec.get("containers")
    if not containers:
        return [FieldError(f"{path}.containers", "FieldValueRequired", "Required value")]
    errors = []
    names = set()
    for i, c in enumerate(containers):
        where = f"{path}.containers[{i}]"
        if not isinstance(c, dict):
            errors.append(
                FieldError(where, "FieldValueInvalid", "Invalid value: must be an object")
            )
            continue
        if not c.get("name"):
            errors.append(FieldError(f"{where}.name", "FieldValueRequired", "Required value"))
        elif c["name"] in names:
            errors.append(
                FieldError(
                    f"{where}.name",
                    "FieldValueDuplicate",
                    f"Duplicate value: {go_value(c['name'])}",
                )
            )
        names.add(c.get("name"))
        if not c.get("image"):
            errors.append(FieldError(f"{where}.image", "FieldValueRequired", "Required value"))
    return errors


_POD_UPDATE_FORBIDDEN = (
    "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only "
    "additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be "
    "set to 1 if it was previously negative)"
)


def _mutable_part_removed(spec: JSON) -> JSON:
    """A pod spec without the fields an update may change (images, deadline, tolerations)."""
    out = {
        k: v
        for k, v in spec.items()
        if k not in ("activeDeadlineSeconds", "tolerations", "schedulingGates")
    }
    for key in ("containers", "initContainers"):
        if isinstance(out.get(key), list):
            out[key] = [
                {k: v for k, v in c.items() if k != "image"} if isinstance(c, dict) else c
                for c in out[key]
            ]
    return out


def validate_pod(obj: JSON, old: JSON | None) -> list[FieldError]:
    errors = pod_spec_errors(obj.get("spec"), "spec")
    if old is not None and isinstance(obj.get("spec"), dict):
        new_spec, old_spec = obj["spec"], old.get("spec") or {}
        if _mutable_part_removed(new_spec) != _mutable_part_removed(old_spec):
            errors.append(FieldError("spec", "FieldValueForbidden", _POD_UPDATE_FORBIDDEN))
        old_tolerations = old_spec.get("tolerations") or []
        if any(t not in (new_spec.get("tolerations") or []) for t in old_tolerations):
            errors.append(
                FieldError(
                    "spec.tolerations",
                    "FieldValueForbidden",
                    "Forbidden: existing toleration can not be modified except "
                    "its tolerationSeconds",
                )
            )
    return errors


def bind_pod(pod: JSON, binding: JSON) -> None:
    """What ``POST pods/<name>/binding`` does: set spec.nodeName once (409 when bound)."""
    target = binding.get("target") if isinstance(binding.get("target"), dict) else {}
    node = target.get("name") if isinstance(target, dict) else None
    if not node:
        raise ApiError(400, "a Binding needs target.name")
    spec = pod.setdefault("spec", {})
    if spec.get("nodeName"):
        name = pod["metadata"]["name"]
        raise ApiError(
            409,
            f'pod {name} is already assigned to node "{spec["nodeName"]}"',
            details={"name": name, "kind": "pods"},
        )
    spec["nodeName"] = str(node)
