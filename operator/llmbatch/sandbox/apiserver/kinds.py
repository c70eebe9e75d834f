"""What the API server does per built-in kind on create and update: the defaults its
registry strategies set, the status it resets, and the few checks clients rely on."""

from __future__ import annotations

import base64
import itertools
from typing import Any

from llmbatch.sandbox.apiserver.errors import ApiError, FieldError, go_value
from llmbatch.sandbox.apiserver.resources import ResourceType

JSON = dict[str, Any]

CRD_CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
_cluster_ips = itertools.count(1)


def prepare_create(rt: ResourceType, obj: JSON) -> None:
    """Defaults and status resets, in place, before validation."""
    handler = _CREATE.get((rt.group, rt.plural))
    if handler is not None:
        handler(obj)
    _encode_string_data(rt, obj)


def prepare_update(rt: ResourceType, old: JSON, new: JSON) -> None:
    _encode_string_data(rt, new)
    if (rt.group, rt.plural) == ("apiextensions.k8s.io", "customresourcedefinitions"):
        crd_status(new)
    if (rt.group, rt.plural) == ("", "namespaces"):
        new.setdefault("spec", old.get("spec") or {})


def validate(rt: ResourceType, obj: JSON, old: JSON | None) -> list[FieldError]:
    check = _VALIDATE.get((rt.group, rt.plural))
    return check(obj, old) if check else []


# -- namespaces ------------------------------------------------------------------------------
def _namespace(obj: JSON) -> None:
    meta = obj["metadata"]
    meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
    obj["spec"] = {"finalizers": ["kubernetes"]}
    obj["status"] = {"phase": "Active"}


# -- pods ------------------------------------------------------------------------------------
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


def _pod(obj: JSON) -> None:
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


def _pod_spec_errors(spec: Any, path: str) -> list[FieldError]:
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


def _validate_pod(obj: JSON, old: JSON | None) -> list[FieldError]:
    errors = _pod_spec_errors(obj.get("spec"), "spec")
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


# -- jobs ------------------------------------------------------------------------------------
def _job(obj: JSON) -> None:
    spec = obj.setdefault("spec", {})
    uid, name = obj["metadata"]["uid"], obj["metadata"]["name"]
    if "parallelism" not in spec and "completions" not in spec:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 2147483647 if "backoffLimitPerIndex" in spec else 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("manualSelector", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    template = spec.setdefault("template", {})
    labels = template.setdefault("metadata", {}).setdefault("labels", {})
    if not spec.get("manualSelector"):
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
        labels.update(
            {
                "batch.kubernetes.io/controller-uid": uid,
                "controller-uid": uid,
                "batch.kubernetes.io/job-name": name,
                "job-name": name,
            }
        )
    pod_spec_defaults(template.setdefault("spec", {}), restart_policy="Never")
    obj["status"] = {}


def _validate_job(obj: JSON, old: JSON | None) -> list[FieldError]:
    spec = obj.get("spec") or {}
    errors = _pod_spec_errors((spec.get("template") or {}).get("spec"), "spec.template.spec")
    name = str(obj["metadata"].get("name", ""))
    if len(name) > 63:
        # The name becomes the job-name label of its pods, so it must fit a label value.
        errors.append(
            FieldError(
                "metadata.name",
                "FieldValueInvalid",
                f"Invalid value: {go_value(name)}: must be no more than 63 characters",
            )
        )
    policy = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy")
    if policy not in ("Never", "OnFailure"):
        errors.append(
            FieldError(
                "spec.template.spec.restartPolicy",
                "FieldValueNotSupported",
                f'Unsupported value: {go_value(policy)}: supported values: "OnFailure", "Never"',
            )
        )
    for field in ("parallelism", "completions", "backoffLimit", "activeDeadlineSeconds"):
        value = spec.get(field)
        if value is not None and (not isinstance(value, int) or value < 0):
            errors.append(
                FieldError(
                    f"spec.{field}",
                    "FieldValueInvalid",
                    f"Invalid value: {go_value(value)}: must be greater than or equal to 0",
                )
            )
    if spec.get("completionMode") == "Indexed" and spec.get("completions") is None:
        errors.append(
            FieldError(
                "spec.completions",
                "FieldValueRequired",
                "Required value: when completion mode is Indexed",
            )
        )
    if old is not None:
        old_spec = old.get("spec") or {}
        for field in ("template", "selector", "completionMode"):
            if spec.get(field) != old_spec.get(field):
                errors.append(
                    FieldError(
                        f"spec.{field}",
                        "FieldValueInvalid",
                        f"Invalid value: {go_value(spec.get(field))}: field is immutable",
                    )
                )
    return errors


# -- services, secrets -----------------------------------------------------------------------
def _service(obj: JSON) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec.get("clusterIP") != "None":
        n = next(_cluster_ips)
        spec["clusterIP"] = f"10.96.{n // 250}.{n % 250 + 1}"
    spec["clusterIPs"] = [spec["clusterIP"]]
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
    obj["status"] = {"loadBalancer": {}}


def _secret(obj: JSON) -> None:
    obj.setdefault("type", "Opaque")


def _encode_string_data(rt: ResourceType, obj: JSON) -> None:
    """Secrets' write-only ``stringData`` is folded into base64 ``data``, as the API does."""
    if (rt.group, rt.plural) != ("", "secrets"):
        return
    for key, value in (obj.get("data") or {}).items():
        try:
            base64.b64decode(str(value), validate=True)
        except ValueError:
            raise ApiError(
                400,
                f'Secret in version "v1" cannot be handled as a Secret: '
                f"illegal base64 data in data[{key!r}]",
            ) from None
    string_data = obj.pop("stringData", None) or {}
    if string_data:
        data = obj.setdefault("data", {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()


# -- custom resource definitions ------------------------------------------------------------
def crd_status(obj: JSON) -> None:
    spec = obj.get("spec") or {}
    names = dict(spec.get("names") or {})
    names.setdefault("singular", str(names.get("kind", "")).lower())
    names.setdefault("listKind", f"{names.get('kind', '')}List")
    stored = [v["name"] for v in spec.get("versions") or [] if v.get("storage")]
    from llmbatch.sandbox.apiserver.meta import now

    stamp = now()
    status = obj.setdefault("status", {})
    previous = {c.get("type"): c for c in status.get("conditions") or []}
    conditions = []
    for kind, reason, message in (
        ("NamesAccepted", "NoConflicts", "no conflicts found"),
        ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
    ):
        old = previous.get(kind) or {}
        conditions.append(
            {
                "type": kind,
                "status": "True",
                "reason": reason,
                "message": message,
                "lastTransitionTime": old.get("lastTransitionTime", stamp),
            }
        )
    status["conditions"] = conditions
    status["acceptedNames"] = names
    status["storedVersions"] = sorted(set(status.get("storedVersions") or []) | set(stored))


def _crd(obj: JSON) -> None:
    spec = obj.setdefault("spec", {})
    for version in spec.get("versions") or []:
        version.setdefault("served", True)
        version.setdefault("storage", len(spec["versions"]) == 1)
    spec.setdefault("scope", "Namespaced")
    names = spec.setdefault("names", {})
    if names.get("kind"):
        names.setdefault("singular", str(names["kind"]).lower())
        names.setdefault("listKind", f"{names['kind']}List")
    finalizers = obj["metadata"].setdefault("finalizers", [])
    if CRD_CLEANUP_FINALIZER not in finalizers:
        finalizers.append(CRD_CLEANUP_FINALIZER)
    obj["status"] = {}
    crd_status(obj)


def _validate_crd(obj: JSON, old: JSON | None) -> list[FieldError]:
    spec = obj.get("spec") or {}
    names = spec.get("names") or {}
    errors = []
    for field, value in (
        ("spec.group", spec.get("group")),
        ("spec.names.plural", names.get("plural")),
        ("spec.names.kind", names.get("kind")),
    ):
        if not value:
            errors.append(FieldError(field, "FieldValueRequired", "Required value"))
    versions = spec.get("versions") or []
    if not versions:
        errors.append(
            FieldError(
                "spec.versions",
                "FieldValueRequired",
                "Required value: must have exactly one version marked as storage version",
            )
        )
    elif sum(1 for v in versions if v.get("storage")) != 1:
        errors.append(
            FieldError(
                "spec.versions",
                "FieldValueInvalid",
                "Invalid value: must have exactly one version marked as storage version",
            )
        )
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        errors.append(
            FieldError(
                "spec.scope",
                "FieldValueNotSupported",
                f"Unsupported value: {go_value(spec.get('scope'))}: supported "
                'values: "Cluster", "Namespaced"',
            )
        )
    expected = f"{names.get('plural')}.{spec.get('group')}"
    name = obj["metadata"].get("name")
    if not errors and name != expected:
        errors.append(
            FieldError(
                "metadata.name",
                "FieldValueInvalid",
                f'Invalid value: {go_value(name)}: must be spec.names.plural+"."+spec.group',
            )
        )
    if old is not None:
        old_spec = old.get("spec") or {}
        for field in ("group", "scope"):
            if spec.get(field) != old_spec.get(field):
                errors.append(
                    FieldError(
                        f"spec.{field}",
                        "FieldValueInvalid",
                        f"Invalid value: {go_value(spec.get(field))}: field is immutable",
                    )
                )
    return errors


_CREATE = {
    ("", "namespaces"): _namespace,
    ("", "pods"): _pod,
    ("batch", "jobs"): _job,
    ("", "services"): _service,
    ("", "secrets"): _secret,
    ("apiextensions.k8s.io", "customresourcedefinitions"): _crd,
}
_VALIDATE = {
    ("", "pods"): _validate_pod,
    ("batch", "jobs"): _validate_job,
    ("apiextensions.k8s.io", "customresourcedefinitions"): _validate_crd,
}
