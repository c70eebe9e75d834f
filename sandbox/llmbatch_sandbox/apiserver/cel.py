"""CEL ``x-kubernetes-validations`` rules, evaluated with cel-python. Transition rules
(those naming ``oldSelf``) run only on updates where the old value exists, as in Kubernetes."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from llmbatch.api.schema import json_type
from llmbatch_sandbox.apiserver.errors import FieldError

JSON = dict[str, Any]

MISSING = object()  # "no old value": a create, or a field the old object lacked


@lru_cache(maxsize=512)
def _program(rule: str) -> Any:
    import celpy  # lark grammar load: only when a CRD has rules

    env = celpy.Environment()
    return env.program(env.compile(rule))


def _evaluate(rule: str, value: Any, old: Any) -> tuple[bool, str | None]:
    from celpy.adapter import json_to_cel

    activation = {"self": json_to_cel(value)}
    if old is not MISSING:
        activation["oldSelf"] = json_to_cel(old)
    try:
        result = _program(rule).evaluate(activation)
    except Exception as exc:  # compile or evaluation error: Kubernetes reports it as invalid
        return False, f"rule {rule!r} could not be evaluated: {exc}"
    if isinstance(result, Exception):
        return False, f"rule {rule!r} could not be evaluated: {result}"
    return bool(result), None


def check(value: Any, schema: JSON | None, old: Any = MISSING, path: str = "") -> list[FieldError]:
    """All failed rules under ``schema`` for ``value`` (``old``: the previous object)."""
    if schema is None or value is None:
        return []
    errors: list[FieldError] = []
    for rule_spec in schema.get("x-kubernetes-validations") or []:
        rule = str(rule_spec.get("rule", ""))
        transition = "oldSelf" in rule
        if transition and old is MISSING:
            continue
        ok, failure = _evaluate(rule, value, old if transition else MISSING)
        if ok:
            continue
        field = path
        if rule_spec.get("fieldPath"):
            field = path + str(rule_spec["fieldPath"])
        message = failure or str(rule_spec.get("message") or f"failed rule: {rule}")
        reason = {
            "FieldValueForbidden": "FieldValueForbidden",
            "FieldValueRequired": "FieldValueRequired",
            "FieldValueDuplicate": "FieldValueDuplicate",
        }.get(str(rule_spec.get("reason")), "FieldValueInvalid")
        # Kubernetes shows the schema type, not the value, in CEL failures.
        shown = '"' + str(schema.get("type") or json_type(value)) + '"'
        prefix = "Invalid value: " + shown + ": " if reason == "FieldValueInvalid" else ""
        errors.append(FieldError(field.lstrip("."), reason, prefix + message))
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            sub = props.get(key) if key in props else additional
            if not isinstance(sub, dict):
                continue
            old_item = old.get(key, MISSING) if isinstance(old, dict) else MISSING
            errors.extend(check(item, sub, old_item, f"{path}.{key}" if path else key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            # List items have no stable identity here: transition rules are skipped for them.
            errors.extend(check(item, schema["items"], MISSING, f"{path}[{i}]"))
    return errors
