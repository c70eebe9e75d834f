"""Object metadata: timestamps, names (``generateName``), uids and the checks Kubernetes
makes on them."""

from __future__ import annotations

import random
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from llmbatch_sandbox.apiserver.errors import FieldError, go_value

JSON = dict[str, Any]

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# The alphabet Kubernetes draws generateName suffixes from (no vowels, no confusables).
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

# Resources whose names are DNS labels (63 chars, no dots) rather than subdomains.
LABEL_NAMED = {"namespaces", "services"}


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_uid() -> str:
    return str(uuid.uuid4())


def generate_name(prefix: str) -> str:
    suffix = "".join(random.choice(_SUFFIX_ALPHABET) for _ in range(5))
    return prefix[:58] + suffix


def validate_name(name: str, plural: str) -> list[FieldError]:
    if plural in LABEL_NAMED:
        if len(name) > 63 or not _LABEL.match(name):
            return [
                FieldError(
                    "metadata.name",
                    "FieldValueInvalid",
                    f"Invalid value: {go_value(name)}: a lowercase RFC 1123 label must "
                    "consist of lower case alphanumeric characters or '-', and must "
                    "start and end with an alphanumeric character",
                )
            ]
        return []
    if len(name) > 253 or not _SUBDOMAIN.match(name):
        return [
            FieldError(
                "metadata.name",
                "FieldValueInvalid",
                f"Invalid value: {go_value(name)}: a lowercase RFC 1123 subdomain must "
                "consist of lower case alphanumeric characters, '-' or '.', and must "
                "start and end with an alphanumeric character",
            )
        ]
    return []


def validate_labels(meta: JSON) -> list[FieldError]:
    errors = []
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict):
        return [FieldError("metadata.labels", "FieldValueInvalid", "Invalid value: must be a map")]
    for key, value in labels.items():
        name = key.rsplit("/", 1)[-1]
        prefix = key.rsplit("/", 1)[0] if "/" in key else ""
        if (
            len(name) > 63
            or not _LABEL_NAME.match(name)
            or (prefix and not _SUBDOMAIN.match(prefix))
        ):
            errors.append(
                FieldError(
                    "metadata.labels",
                    "FieldValueInvalid",
                    f"Invalid value: {go_value(key)}: name part must consist of "
                    "alphanumeric characters, '-', '_' or '.'",
                )
            )
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            errors.append(
                FieldError(
                    "metadata.labels",
                    "FieldValueInvalid",
                    f"Invalid value: {go_value(value)}: a valid label must be an "
                    "empty string or consist of alphanumeric characters, '-', "
                    "'_' or '.'",
                )
            )
    annotations = meta.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(v, str) for v in annotations.values()
    ):
        errors.append(
            FieldError(
                "metadata.annotations",
                "FieldValueInvalid",
                "Invalid value: annotation values must be strings",
            )
        )
    return errors


def validate_shape(meta: JSON) -> list[FieldError]:
    """The types of the metadata lists the controllers walk: finalizers and ownerReferences."""
    errors = []
    finalizers = meta.get("finalizers")
    if finalizers is not None and (
        not isinstance(finalizers, list) or not all(isinstance(f, str) and f for f in finalizers)
    ):
        errors.append(
            FieldError(
                "metadata.finalizers",
                "FieldValueInvalid",
                "Invalid value: must be a list of non-empty strings",
            )
        )
    refs = meta.get("ownerReferences")
    if refs is not None:
        if not isinstance(refs, list):
            return [
                *errors,
                FieldError(
                    "metadata.ownerReferences", "FieldValueInvalid", "Invalid value: must be a list"
                ),
            ]
        for i, ref in enumerate(refs):
            where = f"metadata.ownerReferences[{i}]"
            if not isinstance(ref, dict):
                errors.append(
                    FieldError(where, "FieldValueInvalid", "Invalid value: not an object")
                )
                continue
            for key in ("apiVersion", "kind", "name", "uid"):
                if not isinstance(ref.get(key), str) or not ref.get(key):
                    errors.append(
                        FieldError(f"{where}.{key}", "FieldValueRequired", "Required value")
                    )
        if sum(1 for r in refs if isinstance(r, dict) and r.get("controller")) > 1:
            errors.append(
                FieldError(
                    "metadata.ownerReferences",
                    "FieldValueInvalid",
                    "Invalid value: Only one reference can have Controller set to true",
                )
            )
    return errors
