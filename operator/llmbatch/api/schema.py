"""Turn pydantic's JSON Schema into a Kubernetes *structural* OpenAPI v3 schema, and back into
a strict JSON Schema for validating objects offline (tests, the sandbox API emulator).

Kubernetes accepts only a subset of OpenAPI v3 in a CRD: no ``$ref``, a ``type`` on every
node, no ``additionalProperties`` next to ``properties``, no ``anyOf`` that changes the type.
Pydantic writes ``$ref``/``$defs`` for nested models, ``anyOf: [X, null]`` for ``X | None``
and a ``title`` on every field; this module rewrites those into the plain form.
"""

from __future__ import annotations

import copy
from typing import Any

Schema = dict[str, Any]

PRESERVE_UNKNOWN = "x-kubernetes-preserve-unknown-fields"

# Keywords copied through unchanged; anything else pydantic writes is dropped (title, const
# of a one-value Literal is turned into an enum below, examples, ...).
_KEPT = (
    "type",
    "format",
    "description",
    "enum",
    "default",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "pattern",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "required",
    "x-kubernetes-validations",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    PRESERVE_UNKNOWN,
)


class SchemaError(ValueError):
    """The model uses a construct a structural schema cannot express."""


def to_structural(schema: Schema, defs: dict[str, Schema] | None = None, path: str = "") -> Schema:
    """Rewrite one pydantic JSON Schema node (and its children) into structural form.

    ``defs`` is the ``$defs`` table of the root schema; ``path`` only names the node in errors.
    """
    table = defs if defs is not None else schema.get("$defs", {})
    node = _resolve(schema, table, path)
    out: Schema = {key: copy.deepcopy(node[key]) for key in _KEPT if key in node}
    if "const" in node and "enum" not in out:
        out["enum"] = [node["const"]]
    # Null defaults come from ``X | None = None``: absence already means "unset".
    if out.get("default", 0) is None:
        del out["default"]
    if "type" not in out:
        out["type"] = _infer_type(node, path)

    if "properties" in node:
        out["properties"] = {
            name: to_structural(child, table, f"{path}.{name}")
            for name, child in node["properties"].items()
        }
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and extra and "properties" not in node:
        out["additionalProperties"] = to_structural(extra, table, f"{path}.*")
    elif out["type"] == "object" and "properties" not in node and not out.get(PRESERVE_UNKNOWN):
        # A free-form object (dict[str, Any]) would be pruned to {} by the API server; the
        # model must mark it explicitly so keeping unknown content is a decision, not an accident.
        raise SchemaError(f"{path or '<root>'}: free-form object; mark it with {PRESERVE_UNKNOWN}")
    if "items" in node:
        out["items"] = to_structural(node["items"], table, f"{path}[]")
    elif out["type"] == "array":
        raise SchemaError(f"{path or '<root>'}: array without an item schema")
    return out


def _resolve(schema: Schema, defs: dict[str, Schema], path: str) -> Schema:
    """Inline ``$ref`` and collapse ``anyOf``; the node's own keywords win over the target's
    (pydantic puts a field's description, default and extras next to the ``$ref``)."""
    node = dict(schema)
    ref = node.pop("$ref", None)
    if ref is not None:
        target = _lookup(ref, defs, path)
        node = {**_resolve(target, defs, path), **node}
    variants = node.pop("anyOf", None)
    if variants is not None:
        node = {**_collapse(variants, defs, path), **node}
    node.pop("$defs", None)
    for keyword in ("oneOf", "allOf", "not"):
        if keyword in node:
            raise SchemaError(f"{path or '<root>'}: {keyword} is not supported in a CRD schema")
    return node


def _lookup(ref: str, defs: dict[str, Schema], path: str) -> Schema:
    prefix = "#/$defs/"
    if not ref.startswith(prefix) or ref[len(prefix) :] not in defs:
        raise SchemaError(f"{path or '<root>'}: unresolvable $ref {ref}")
    return defs[ref[len(prefix) :]]


def _collapse(variants: list[Schema], defs: dict[str, Schema], path: str) -> Schema:
    """``X | None`` becomes X; ``Enum | str`` becomes a plain string (the wider type)."""
    kept = [_resolve(v, defs, path) for v in variants if v != {"type": "null"}]
    if len(kept) == 1:
        return kept[0]
    types = {_infer_type(v, path) for v in kept}
    if len(types) != 1:
        raise SchemaError(f"{path or '<root>'}: a union of {sorted(types)} has no structural form")
    # Only the variants without an enum constrain nothing; the union accepts their values.
    free = [v for v in kept if "enum" not in v and "const" not in v]
    if free:
        return free[0]
    return {"type": types.pop(), "enum": [e for v in kept for e in v.get("enum", [v.get("const")])]}


def _infer_type(node: Schema, path: str) -> str:
    if "type" in node:
        return str(node["type"])
    if "properties" in node or "additionalProperties" in node:
        return "object"
    if "items" in node:
        return "array"
    values = node.get("enum", [node["const"]] if "const" in node else [])
    kinds = {json_type(v) for v in values}
    if len(kinds) == 1:
        return kinds.pop()
    raise SchemaError(f"{path or '<root>'}: cannot tell the type of {sorted(node)}")


def json_type(value: Any) -> str:
    """The JSON Schema type name of a decoded JSON value ("null" for None). Shared by the CRD
    generator and the API emulator's schema checks, which name types in their messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def structural_problems(schema: Schema, path: str = "") -> list[str]:
    """What makes ``schema`` non-structural, the way the API server would object (empty when
    the schema is fine). Covers the rules our generator can break."""
    here = path or "<root>"
    problems: list[str] = []
    for keyword in ("$ref", "anyOf", "oneOf", "allOf", "not", "$defs", "definitions", "title"):
        if keyword in schema:
            problems.append(f"{here}: {keyword} is not allowed")
    if "type" not in schema:
        problems.append(f"{here}: type is missing")
    if "properties" in schema and "additionalProperties" in schema:
        problems.append(f"{here}: properties and additionalProperties are mutually exclusive")
    if schema.get("additionalProperties") is False:
        problems.append(f"{here}: additionalProperties false is not allowed")
    if schema.get("nullable") and schema.get("type") is None:
        problems.append(f"{here}: nullable needs a type")
    for name, child in schema.get("properties", {}).items():
        problems += structural_problems(child, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        problems += structural_problems(schema["additionalProperties"], f"{path}.*")
    if "items" in schema:
        problems += structural_problems(schema["items"], f"{path}[]")
    if schema.get("x-kubernetes-list-type") == "map":
        item = schema.get("items", {})
        for key in schema.get("x-kubernetes-list-map-keys", []):
            declared = item.get("properties", {}).get(key, {})
            if key not in item.get("required", []) and "default" not in declared:
                problems.append(f"{here}: list map key {key} must be required or defaulted")
    return problems


def to_jsonschema(openapi: Schema, strict: bool = True) -> Schema:
    """A draft 2020-12 JSON Schema equivalent to a CRD's openAPIV3Schema.

    With ``strict`` an object with declared properties and no preserve-unknown marker rejects
    unknown fields (where the API server would prune them and ``kubectl --validate=strict``
    fails), so typos show up in tests. ``nullable`` becomes an added ``null`` type.
    """
    out: Schema = {}
    for key, value in openapi.items():
        if key == "properties":
            out[key] = {name: to_jsonschema(child, strict) for name, child in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = to_jsonschema(value, strict)
        elif key == "nullable":
            continue
        else:
            out[key] = copy.deepcopy(value)
    if openapi.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        strict
        and "properties" in openapi
        and "additionalProperties" not in openapi
        and not openapi.get(PRESERVE_UNKNOWN)
    ):
        out["additionalProperties"] = False
    return out


__all__ = ["Schema", "SchemaError", "structural_problems", "to_jsonschema", "to_structural"]
