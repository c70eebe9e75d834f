"""Label selectors (equality and set based) and field selectors, as list/watch take them."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llmbatch_sandbox.apiserver.errors import ApiError

JSON = dict[str, Any]


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!exists"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        # "!=" and "notin" match objects that lack the label too, as in Kubernetes.
        return not present or value not in self.values


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside ``(...)``."""
    parts: list[str] = []
    depth = 0
    current = ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


_SET_RE = re.compile(r"^([^\s!=()]+)\s+(in|notin)\s*\(([^)]*)\)$")
_CMP_RE = re.compile(r"^([^\s!=()]+)\s*(==|=|!=)\s*([^\s!=()]*)$")
_KEY_RE = re.compile(r"^(!?)\s*([^\s!=(),]+)$")


def parse_label_selector(text: str | None) -> list[Requirement]:
    if not text:
        return []
    requirements: list[Requirement] = []
    for part in _split_top_level(text):
        if m := _SET_RE.match(part):
            values = tuple(v.strip() for v in m.group(3).split(",") if v.strip())
            requirements.append(Requirement(m.group(1), m.group(2), values))
        elif m := _CMP_RE.match(part):
            op = "!=" if m.group(2) == "!=" else "="
            requirements.append(Requirement(m.group(1), op, (m.group(3),)))
        elif m := _KEY_RE.match(part):
            requirements.append(Requirement(m.group(2), "!exists" if m.group(1) else "exists"))
        else:
            raise ApiError(400, f"unable to parse requirement: {part!r}: invalid label selector")
    return requirements


def selector_from_match(selector: JSON | None) -> list[Requirement]:
    """A ``metav1.LabelSelector`` (matchLabels + matchExpressions) as requirements."""
    if not selector:
        return []
    reqs = [Requirement(k, "=", (str(v),)) for k, v in (selector.get("matchLabels") or {}).items()]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}
    for expr in selector.get("matchExpressions") or []:
        op = ops.get(str(expr.get("operator")))
        if op is None:
            raise ApiError(400, f"invalid label selector operator {expr.get('operator')!r}")
        reqs.append(Requirement(str(expr.get("key")), op, tuple(expr.get("values") or ())))
    return reqs


@dataclass(frozen=True)
class FieldRequirement:
    path: str
    negate: bool
    value: str


def parse_field_selector(text: str | None) -> list[FieldRequirement]:
    if not text:
        return []
    out = []
    for part in _split_top_level(text):
        m = re.fullmatch(r"([^\s!=]+)\s*(==|=|!=)\s*(.*)", part)
        if not m:
            raise ApiError(400, f"invalid field selector: {part!r}")
        out.append(FieldRequirement(m.group(1), m.group(2) == "!=", m.group(3).strip()))
    return out


def _field_value(obj: JSON, path: str) -> str:
    node: Any = obj
    for step in path.split("."):
        if not isinstance(node, dict):
            return ""
        node = node.get(step)
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


@dataclass(frozen=True)
class Filter:
    """What one list or watch selects: namespace, labels and fields."""

    namespace: str | None
    labels: tuple[Requirement, ...] = ()
    fields: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: JSON) -> bool:
        meta = obj.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace", "") != self.namespace:
            return False
        labels = meta.get("labels") or {}
        if not all(r.matches(labels) for r in self.labels):
            return False
        for f in self.fields:
            equal = _field_value(obj, f.path) == f.value
            if equal == f.negate:
                return False
        return True


def make_filter(
    namespace: str | None, label_selector: str | None, field_selector: str | None
) -> Filter:
    return Filter(
        namespace,
        tuple(parse_label_selector(label_selector)),
        tuple(parse_field_selector(field_selector)),
    )


Matcher = Callable[[JSON], bool]
