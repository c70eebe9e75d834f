"""Which part of the product may import which (docs/architecture.md draws the same picture).

Every ``import`` in operator/llmbatch, including those inside functions, is read with ``ast``
and checked against the table below. api and storage are leaves; controller, runner and
gateway never import each other; only the CLI (the entry point) may reach every part; and no
product module imports the sandbox, which is a distribution of its own for trying and testing.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "llmbatch"

# part -> the other parts of llmbatch it may import (itself is always allowed).
ALLOWED: dict[str, frozenset[str]] = {
    "api": frozenset(),
    "storage": frozenset(),
    "kube": frozenset({"api"}),
    # Webhook signing, URL checks and delivery: the gateway and the controller both send.
    "notify": frozenset({"api"}),
    "controller": frozenset({"api", "storage", "kube", "notify"}),
    # Model sources seen from outside the engine (a tokenizer found without the weights).
    "models": frozenset({"api", "storage"}),
    "runner": frozenset({"api", "storage", "models"}),
    "gateway": frozenset({"api", "storage", "kube", "notify", "models"}),
    "cli": frozenset(
        {"api", "storage", "kube", "controller", "runner", "gateway", "notify", "models"}
    ),
    # llmbatch/__init__.py and other top-level modules: only the leaves.
    "": frozenset({"api"}),
}
FORBIDDEN_TOP_LEVEL = ("llmbatch_sandbox",)


def imported_modules(source: str, module: str) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``; relative imports are
    resolved against ``module`` (the dotted name of the file being read)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: -node.level]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield node.lineno, target
            # `from llmbatch import runner` imports the part named in the alias.
            if target == "llmbatch":
                for alias in node.names:
                    yield node.lineno, f"llmbatch.{alias.name}"


def part_of(module: str) -> str | None:
    """The part a dotted llmbatch module belongs to ('' for top-level modules), else None."""
    pieces = module.split(".")
    if pieces[0] != "llmbatch":
        return None
    if len(pieces) == 1:
        return ""
    return pieces[1] if pieces[1] in ALLOWED else ""


def violations(source: str, module: str) -> list[str]:
    own = part_of(module)
    assert own is not None, module
    allowed = ALLOWED.get(own)
    found: list[str] = []
    for line, target in imported_modules(source, module):
        if target.split(".")[0] in FORBIDDEN_TOP_LEVEL:
            found.append(f"{module}:{line} imports the sandbox ({target})")
            continue
        other = part_of(target)
        if other is None or other == own or other == "":
            continue
        if allowed is None:
            found.append(f"{module}:{line}: part {own!r} is not in the import table")
        elif other not in allowed:
            found.append(f"{module}:{line}: {own or 'llmbatch'} may not import {target}")
    return found


def product_modules() -> Iterator[tuple[Path, str]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(relative.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield path, ".".join(parts)


def test_every_part_is_in_the_table() -> None:
    parts = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert parts <= set(ALLOWED), f"add {sorted(parts - set(ALLOWED))} to ALLOWED"


def test_product_imports_follow_the_contract() -> None:
    problems: list[str] = []
    for path, module in product_modules():
        problems.extend(violations(path.read_text(encoding="utf-8"), module))
    assert not problems, "\n".join(problems)


def test_the_sandbox_is_not_in_the_product_package() -> None:
    assert not (PACKAGE / "sandbox").exists()


@pytest.mark.parametrize(
    ("source", "module", "expected"),
    [
        ("from llmbatch.runner.run import x", "llmbatch.controller.decide", "may not import"),
        ("import llmbatch.controller", "llmbatch.gateway.app", "may not import"),
        ("from llmbatch import gateway", "llmbatch.runner.run", "may not import"),
        ("from ..runner import run", "llmbatch.controller.decide", "may not import"),
        ("from llmbatch.storage import x", "llmbatch.api.lines", "may not import"),
        ("def f():\n    from llmbatch.kube import c", "llmbatch.runner.run", "may not import"),
        ("import llmbatch_sandbox.main", "llmbatch.cli.main", "imports the sandbox"),
    ],
)
def test_the_checker_catches_each_kind_of_violation(
    source: str, module: str, expected: str
) -> None:
    found = violations(source, module)
    assert found and expected in found[0]


@pytest.mark.parametrize(
    ("source", "module"),
    [
        ("from llmbatch.api.layout import OutputLayout", "llmbatch.runner.finalize"),
        ("from . import layout", "llmbatch.api.documents"),
        ("from llmbatch.controller.config import x", "llmbatch.cli.cmd_operator"),
        ("import json\nimport kopf", "llmbatch.controller.handlers"),
    ],
)
def test_the_checker_accepts_allowed_imports(source: str, module: str) -> None:
    assert violations(source, module) == []
