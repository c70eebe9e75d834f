"""docs/operations.md's table of the operator's RBAC says exactly what the chart grants, in
both scopes: a row per rule with its API group (core for the core group), resources and verbs;
rows that hold only with `rbac.scope=cluster` say so. (What the operator needs is held against
the chart in tests/security/test_rbac.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_chart import render

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
Permission = tuple[str, str, str]  # (apiGroup, resource, verb)
CLUSTER_ONLY = "only with `rbac.scope=cluster`"
SCOPES: dict[str, dict[str, Any]] = {
    "cluster": {},
    "namespaced": {"rbac": {"scope": "namespaced"}, "watchNamespaces": ["team-a"]},
}


def table_rows(text: str, heading: str) -> list[list[str]]:
    """The cells of the first Markdown table under ``heading`` (header and rule left out)."""
    section = text.split(heading, 1)[1]
    rows: list[list[str]] = []
    for line in section.splitlines():
        if not line.startswith("|"):
            if rows:
                break
            continue
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows[2:]


def cell_items(cell: str) -> list[str]:
    """`a`, `b` -> [a, b]."""
    return [item.strip().strip("`") for item in cell.split(",") if item.strip()]


def documented() -> dict[str, set[Permission]]:
    """The documented permissions per scope."""
    rows = table_rows(OPERATIONS.read_text(), "### The operator")
    assert rows, "no RBAC table under '### The operator' in docs/operations.md"
    scopes: dict[str, set[Permission]] = {scope: set() for scope in SCOPES}
    for row in rows:
        assert len(row) == 4, f"expected API group | Resources | Verbs | Why, got {row}"
        group_cell, resources, verbs, why = row
        group = "" if group_cell == "core" else group_cell.strip("`")
        perms = {(group, r, v) for r in cell_items(resources) for v in cell_items(verbs)}
        for scope in SCOPES:
            if scope == "cluster" or CLUSTER_ONLY not in why:
                scopes[scope] |= perms
    return scopes


def rendered(values: dict[str, Any]) -> set[Permission]:
    """What the rendered chart grants the operator (its ClusterRoles and Roles)."""
    perms: set[Permission] = set()
    for obj in render(values):
        if obj["kind"] not in ("ClusterRole", "Role") or "gateway" in obj["metadata"]["name"]:
            continue
        for rule in obj.get("rules") or []:
            for group in rule.get("apiGroups") or [""]:
                for resource in rule["resources"]:
                    perms |= {(group, resource, verb) for verb in rule["verbs"]}
    return perms


@pytest.mark.parametrize("scope", SCOPES)
def test_the_operations_rbac_table_is_what_the_chart_grants(scope: str) -> None:
    doc, chart = documented()[scope], rendered(SCOPES[scope])
    assert sorted(doc - chart) == [], "documented but not granted"
    assert sorted(chart - doc) == [], "granted but not documented"
