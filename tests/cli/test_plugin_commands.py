"""`llmbatch`'s plugin commands (entry-point group `llmbatch.commands`): the sandbox comes from
llm-batch-sandbox that way, the product never imports it, and `llmbatch sandbox` without it
says what to install instead of "no such command"."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from llmbatch.cli import main

runner = CliRunner()


@pytest.fixture
def fresh_plugins() -> Iterator[None]:
    main.plugin_entry_points.cache_clear()
    main.plugin_command.cache_clear()
    yield
    main.plugin_entry_points.cache_clear()
    main.plugin_command.cache_clear()


@pytest.fixture
def no_plugins(fresh_plugins: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **_: [])


def test_the_sandbox_registers_its_command() -> None:
    entries = importlib.metadata.entry_points(group=main.PLUGIN_GROUP, name="sandbox")
    assert [e.value for e in entries] == ["llmbatch_sandbox.command:sandbox"]


def test_installed_plugin_serves_sandbox_with_its_options(fresh_plugins: None) -> None:
    listing = runner.invoke(main.app, ["--help"], terminal_width=200)
    assert listing.exit_code == 0
    assert "not installed" not in listing.output
    group = get_command(main.app)
    with typer.Context(group) as ctx:
        assert group.list_commands(ctx)[0] == "sandbox"  # listed first, as before the move
    result = runner.invoke(main.app, ["sandbox", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for option in ("--port", "--kubeconfig", "--gpu-slots", "--operator"):
        assert option in result.output


@pytest.mark.parametrize("argv", [["sandbox"], ["sandbox", "--port", "0"], ["sandbox", "--help"]])
def test_without_the_plugin_sandbox_says_what_to_install(no_plugins: None, argv: list[str]) -> None:
    result = runner.invoke(main.app, argv)
    assert result.exit_code == 1
    assert "pip install llm-batch-sandbox" in result.output
    assert "No such command" not in result.output


def test_without_the_plugin_help_still_lists_sandbox(no_plugins: None) -> None:
    result = runner.invoke(main.app, ["--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "sandbox" in result.output and "llm-batch-sandbox" in result.output


def test_built_in_commands_do_not_scan_installed_packages(
    fresh_plugins: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def scan(**_: Any) -> list[Any]:
        raise AssertionError("entry points scanned for a built-in command")

    monkeypatch.setattr(importlib.metadata, "entry_points", scan)
    result = runner.invoke(main.app, ["validate", "--help"])
    assert result.exit_code == 0, result.output


def test_a_plugin_cannot_replace_a_built_in(
    fresh_plugins: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    rogue = importlib.metadata.EntryPoint("validate", "os:getcwd", main.PLUGIN_GROUP)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **_: [rogue])
    result = runner.invoke(main.app, ["validate", "--help"])
    assert result.exit_code == 0 and "line number" in result.output


def test_a_broken_plugin_is_named() -> None:
    code = (
        "import importlib.metadata as m\n"
        "broken = m.EntryPoint('sandbox', 'no_such_module_x:cmd', 'llmbatch.commands')\n"
        "m.entry_points = lambda **_: [broken]\n"
        "from llmbatch.cli.main import main\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "sandbox"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "'sandbox'" in done.stderr and "failed to load" in done.stderr
