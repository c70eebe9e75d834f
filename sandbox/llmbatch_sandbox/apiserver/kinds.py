"""What the API server does per built-in kind on create and update: the defaults its
registry strategies set, the status it resets, and the few checks clients rely on."""

from __future__ import annotations

import base64
import itertools
from typing import Any

from llmbatch_sandbox.apiserver import crds, pods
from llmbatch_sandbox.apiserver.errors import ApiError, FieldError, go_value
from llmbatch_sandbox.apiserver.resources import ResourceType

JSON = dict[str, Any]

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
        crds.crd_status(new)
    if (rt.group, rt.plural) == ("", "namespaces"):
        new.setdefault("spec", old.get("spec") or {})


def validate(rt: ResourceType, obj: JSON, old: JSON | None) -> list[FieldError]:
    check = _VALIDATE.get(rt.storage)  # events.k8s.io events are checked in core shape
    return check(obj, old) if check else []


# -- namespaces ------------------------------------------------------------------------------
def _namespace(obj: JSON) -> None:
    meta = obj["metadata"]
    meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
    obj["spec"] = {"finalizers": ["kubernetes"]}
    obj["status"] = {"phase": "Active"}


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
    pods.pod_spec_defaults(template.setdefault("spec", {}), restart_policy="Never")
    obj["status"] = {}


def _validate_job(obj: JSON, old: JSON | None) -> list[FieldError]:
    spec = obj.get("spec") or {}
    errors = pods.pod_spec_errors((spec.get("template") or {}).get("spec"), "spec.template.spec")
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


def _validate_event(obj: JSON, old: JSON | None) -> list[FieldError]:
    """An event lives in its object's namespace (or ``default`` for cluster-scoped objects)."""
    involved = obj.get("involvedObject") if isinstance(obj.get("involvedObject"), dict) else {}
    target = str((involved or {}).get("namespace") or "")
    namespace = str(obj["metadata"].get("namespace") or "")
    if (target and target != namespace) or (not target and namespace not in ("", "default")):
        return [
            FieldError(
                "involvedObject.namespace",
                "FieldValueInvalid",
                f"Invalid value: {go_value(target)}: does not match event.namespace",
            )
        ]
    return []


_CREATE = {
    ("", "namespaces"): _namespace,
    ("", "pods"): pods.pod_defaults,
    ("batch", "jobs"): _job,
    ("", "services"): _service,
    ("", "secrets"): _secret,
    ("apiextensions.k8s.io", "customresourcedefinitions"): crds.crd_defaults,
}
_VALIDATE = {
    ("", "events"): _validate_event,
    ("", "pods"): pods.validate_pod,
    ("batch", "jobs"): _validate_job,
    ("apiextensions.k8s.io", "customresourcedefinitions"): crds.validate_crd,
}
