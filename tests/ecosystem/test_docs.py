"""The docs hold together: every relative link and anchor resolves, every doc is listed in
docs/README.md, and the commands and reasons they name exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from llmbatch.api.conditions import Reason
from llmbatch.api.phases import Phase

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
LINK = re.compile(r"\[[^\]]+\]\(([^)\s]+)\)")


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", markdown, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


@pytest.mark.parametrize("doc", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_relative_links_resolve(doc: Path) -> None:
    # Code (fenced blocks, inline spans) may hold regexes that look like links.
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+://", target) or target.startswith("mailto:"):
            continue
        path_part, _, anchor = target.partition("#")
        linked = (doc.parent / path_part).resolve() if path_part else doc
        assert linked.exists(), f"{doc.name}: broken link {target}"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked.read_text()), f"{doc.name}: no anchor {target}"


def test_index_lists_every_doc() -> None:
    index = (DOCS / "README.md").read_text()
    for doc in DOCS.glob("*.md"):
        if doc.name != "README.md":
            assert f"({doc.name})" in index, f"docs/README.md does not link {doc.name}"


def test_troubleshooting_covers_every_phase_and_reason() -> None:
    text = (DOCS / "troubleshooting.md").read_text()
    for phase in Phase:
        assert f"### {phase.value}" in text
    for reason in Reason:
        assert f"`{reason.value}`" in text, f"troubleshooting.md does not explain {reason.value}"


def _documented_commands() -> list[tuple[str, list[str]]]:
    """Every `$ llmbatch ...` command line in the docs' code blocks, continuations joined."""
    import shlex

    found = []
    for doc in sorted(DOCS.glob("*.md")):
        text = doc.read_text().replace("\\\n", " ")
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("$ llmbatch "):
                command = line[2:].split(" | ")[0].split(" && ")[0].split(" > ")[0]
                found.append((doc.name, shlex.split(command, comments=True)))
    return found


def test_documented_cli_options_exist() -> None:
    import click
    from typer.main import get_command

    from llmbatch.cli.main import app as main_app
    from llmbatch.cli.main import plugin_command, plugin_entry_points
    from tests.cli.app import cli_app

    commands: dict[str, click.Command] = {}
    for app in (main_app, cli_app()):
        commands.update(get_command(app).commands)  # type: ignore[attr-defined]
    # Installed plugins (llm-batch-sandbox's `sandbox` and `models`) with their real options.
    for name in plugin_entry_points():
        commands[name] = plugin_command(name)  # type: ignore[assignment]
    documented = _documented_commands()
    assert len(documented) >= 10
    for doc, argv in documented:
        command: click.Command = commands[argv[1]]
        rest = argv[2:]
        # typer's groups are not always click.Group instances: look for sub-commands.
        if hasattr(command, "commands") and rest:
            command = command.commands[rest[0]]
            rest = rest[1:]
        options = {opt for param in command.params for opt in param.opts + param.secondary_opts}
        for word in rest:
            if word.startswith("-") and not re.fullmatch(r"-\d+", word):
                flag = word.split("=")[0]
                assert flag in options, f"{doc}: `{' '.join(argv)}` uses unknown option {flag}"
