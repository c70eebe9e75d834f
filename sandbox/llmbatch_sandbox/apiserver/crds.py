"""CustomResourceDefinitions as the API server treats them: defaults, the status
apiextensions-apiserver writes (names accepted, established) and validation."""

from __future__ import annotations

from typing import Any

from llmbatch_sandbox.apiserver.errors import FieldError, go_value
from llmbatch_sandbox.apiserver.meta import now

JSON = dict[str, Any]

CRD_CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"


def crd_status(obj: JSON) -> None:
    spec = obj.get("spec") or {}
    names = dict(spec.get("names") or {})
    names.setdefault("singular", str(names.get("kind", "")).lower())
    names.setdefault("listKind", f"{names.get('kind', '')}List")
    stored = [v["name"] for v in spec.get("versions") or [] if v.get("storage")]
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


def crd_defaults(obj: JSON) -> None:
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


def validate_crd(obj: JSON, old: JSON | None) -> list[FieldError]:
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
