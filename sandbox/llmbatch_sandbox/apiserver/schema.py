"""Structural openAPIV3Schema handling for custom resources, in the order the API server
applies it: prune unknown fields, apply defaults, then validate (CEL rules in cel.py)."""

from __future__ import annotations

import copy
import re
from typing import Any

from llmbatch.api.schema import json_type
from llmbatch_sandbox.apiserver.errors import FieldError, go_value

JSON = dict[str, Any]

# Top-level fields every object keeps whatever its schema says.
_OBJECT_ENVELOPE = ("apiVersion", "kind", "metadata")


def _preserves(schema: JSON) -> bool:
    return bool(schema.get("x-kubernetes-preserve-unknown-fields"))


def prune(
    value: Any,
    schema: JSON | None,
    root: bool = False,
    dropped: list[str] | None = None,
    path: str = "",
) -> Any:
    """Drop fields the schema does not declare (their paths go to ``dropped``) and nulls it
    does not allow."""
    if schema is None:
        return value
    if isinstance(value, dict):
        props = schema.get("properties")
        additional = schema.get("additionalProperties")
        embedded = root or schema.get("x-kubernetes-embedded-resource")
        out: JSON = {}
        for key, item in value.items():
            child = f"{path}.{key}" if path else key
            if embedded and key in _OBJECT_ENVELOPE:
                out[key] = item
                continue
            sub: JSON | None
            if props is not None and key in props:
                sub = props[key]
            elif isinstance(additional, dict):
                sub = additional
            elif _preserves(schema) or additional is True:
                out[key] = item
                continue
            else:
                if dropped is not None:
                    dropped.append(child)
                continue
            if item is None and not (sub or {}).get("nullable"):
                continue
            out[key] = prune(item, sub, dropped=dropped, path=child)
        return out
    if isinstance(value, list):
        items = schema.get("items")
        if not isinstance(items, dict):
            return value
        return [prune(v, items, dropped=dropped, path=f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def apply_defaults(value: Any, schema: JSON | None) -> Any:
    if schema is None:
        return value
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = apply_defaults(value[key], sub)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key in list(value):
                if key not in (schema.get("properties") or {}):
                    value[key] = apply_defaults(value[key], additional)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(v, schema["items"]) for v in value]
    return value


_TYPE_CHECKS = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
}


def _num(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def validate(value: Any, schema: JSON | None, path: str = "") -> list[FieldError]:
    """Kubernetes' structural checks, with its messages (kube-openapi's validate package)."""
    if schema is None:
        return []
    errors: list[FieldError] = []
    where = path or "<root>"
    if value is None:
        if schema.get("nullable"):
            return []
        if schema.get("type"):
            return [
                FieldError(
                    path,
                    "FieldValueInvalid",
                    f'Invalid value: "null": {where} in body must be of type '
                    f'{schema["type"]}: "null"',
                )
            ]
        return []
    stype = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        if not (isinstance(value, str) or _TYPE_CHECKS["integer"](value)):
            return [
                FieldError(
                    path,
                    "FieldValueInvalid",
                    f"Invalid value: {go_value(json_type(value))}: {where} in body must be of "
                    f"type integer,string: {go_value(json_type(value))}",
                )
            ]
    elif stype and stype in _TYPE_CHECKS and not _TYPE_CHECKS[stype](value):
        return [
            FieldError(
                path,
                "FieldValueInvalid",
                f"Invalid value: {go_value(json_type(value))}: {where} in body must be of type "
                f"{stype}: {go_value(json_type(value))}",
            )
        ]
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(go_value(v) for v in schema["enum"])
        errors.append(
            FieldError(
                path,
                "FieldValueNotSupported",
                f"Unsupported value: {go_value(value)}: supported values: {supported}",
            )
        )
    if isinstance(value, int | float) and not isinstance(value, bool):
        errors.extend(_numeric(value, schema, path, where))
    if isinstance(value, str):
        errors.extend(_string(value, schema, path, where))
    if isinstance(value, list):
        errors.extend(_array(value, schema, path, where))
    if isinstance(value, dict):
        errors.extend(_object(value, schema, path, where))
    return errors


def _numeric(value: float, schema: JSON, path: str, where: str) -> list[FieldError]:
    errors = []
    shown = go_value(value)
    if "minimum" in schema:
        low = schema["minimum"]
        if schema.get("exclusiveMinimum") and value <= low:
            errors.append(f"should be greater than {_num(low)}")
        elif value < low:
            errors.append(f"should be greater than or equal to {_num(low)}")
    if "maximum" in schema:
        high = schema["maximum"]
        if schema.get("exclusiveMaximum") and value >= high:
            errors.append(f"should be less than {_num(high)}")
        elif value > high:
            errors.append(f"should be less than or equal to {_num(high)}")
    if "multipleOf" in schema and schema["multipleOf"] and value % schema["multipleOf"]:
        errors.append(f"should be a multiple of {_num(schema['multipleOf'])}")
    return [
        FieldError(path, "FieldValueInvalid", f"Invalid value: {shown}: {where} in body {e}")
        for e in errors
    ]


def _string(value: str, schema: JSON, path: str, where: str) -> list[FieldError]:
    errors = []
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append(
            FieldError(
                path,
                "FieldValueTooLong",
                f"Too long: may not be more than {schema['maxLength']} bytes",
            )
        )
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(
            FieldError(
                path,
                "FieldValueInvalid",
                f"Invalid value: {go_value(value)}: {where} in body should be at "
                f"least {schema['minLength']} chars long",
            )
        )
    if "pattern" in schema and not re.search(schema["pattern"], value):
        errors.append(
            FieldError(
                path,
                "FieldValueInvalid",
                f"Invalid value: {go_value(value)}: {where} in body should match "
                f"'{schema['pattern']}'",
            )
        )
    return errors


def _array(value: list[Any], schema: JSON, path: str, where: str) -> list[FieldError]:
    errors = []
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(
            FieldError(
                path,
                "FieldValueTooMany",
                f"Too many: {len(value)}: must have at most {schema['maxItems']} items",
            )
        )
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(
            FieldError(
                path,
                "FieldValueInvalid",
                f"Invalid value: {len(value)}: {where} in body should have at "
                f"least {schema['minItems']} items",
            )
        )
    items = schema.get("items")
    if isinstance(items, dict):
        for i, item in enumerate(value):
            errors.extend(validate(item, items, f"{path}[{i}]"))
    return errors


def _object(value: JSON, schema: JSON, path: str, where: str) -> list[FieldError]:
    errors = []
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        errors.append(
            FieldError(
                path,
                "FieldValueTooMany",
                f"Too many: {len(value)}: must have at most {schema['maxProperties']} items",
            )
        )
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        errors.append(
            FieldError(
                path,
                "FieldValueInvalid",
                f"Invalid value: {len(value)}: {where} in body should have at "
                f"least {schema['minProperties']} properties",
            )
        )
    for name in schema.get("required") or []:
        if name not in value:
            child = f"{path}.{name}" if path else name
            errors.append(FieldError(child, "FieldValueRequired", "Required value"))
    props = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    for key, item in value.items():
        child = f"{path}.{key}" if path else key
        if not path and key in ("apiVersion", "kind", "metadata"):
            continue
        if key in props:
            errors.extend(validate(item, props[key], child))
        elif isinstance(additional, dict):
            errors.extend(validate(item, additional, f"{path}[{key}]" if path else key))
    return errors
