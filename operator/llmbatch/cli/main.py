"""``llmbatch``: one command for users and operators. Each sub-command lives in its own
``cmd_*`` module, which keeps heavy imports (vLLM, kopf, FastAPI) inside the command body so
``llmbatch --help`` stays instant.

Other distributions add commands through the entry-point group ``llmbatch.commands``
(``name = "module:function"``, a typer command function, or a ``typer.Typer``): the sandbox
(llm-batch-sandbox) provides ``sandbox`` that way, so the product never imports it. Installed
packages are only scanned when a name is not built in or the command list is shown, so the
built-in commands start as fast as before."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import typer
from typer.core import TyperGroup

from llmbatch.cli import (
    cmd_estimate,
    cmd_gateway,
    cmd_keys,
    cmd_operator,
    cmd_results,
    cmd_run,
    cmd_sandbox,
    cmd_status,
    cmd_submit,
    cmd_validate,
    cmd_webhooks,
)

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    # typer >= 0.2x vendors click as typer._click; its groups speak those types.
    from typer._click import Command, Context

PLUGIN_GROUP = "llmbatch.commands"
# Names a plugin provides when installed; until then a stand-in in cmd_<name> says what to install.
PLUGGABLE = frozenset({"sandbox"})


@functools.cache
def plugin_entry_points() -> dict[str, EntryPoint]:
    """The commands other installed distributions register, by name (the first one wins)."""
    from importlib.metadata import entry_points

    found: dict[str, EntryPoint] = {}
    for entry in entry_points(group=PLUGIN_GROUP):
        found.setdefault(entry.name, entry)
    return found


@functools.cache
def plugin_command(name: str) -> Command | None:
    entry = plugin_entry_points().get(name)
    if entry is None:
        return None
    try:
        target = entry.load()
    except Exception as error:
        source = entry.dist.name if entry.dist is not None else entry.value
        typer.echo(
            f"llmbatch: the command {name!r} from {source} failed to load: {error}", err=True
        )
        raise typer.Exit(1) from error
    if not isinstance(target, typer.Typer):
        holder = typer.Typer(add_completion=False)
        holder.command(name)(target)
        target = holder
    command = typer.main.get_command(target)
    command.name = name
    return command


class PluginGroup(TyperGroup):
    """The built-in commands, then those of ``llmbatch.commands``; a plugin can fill a
    PLUGGABLE name but not replace a built-in command."""

    def list_commands(self, ctx: Context) -> list[str]:
        names = super().list_commands(ctx)
        return names + sorted(set(plugin_entry_points()) - set(names))

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        builtin = super().get_command(ctx, cmd_name)
        if builtin is not None and cmd_name not in PLUGGABLE:
            return builtin
        return plugin_command(cmd_name) or builtin


app = typer.Typer(
    name="llmbatch",
    cls=PluginGroup,
    help="Offline LLM batch inference on Kubernetes: run, submit and watch OpenAI-format batches.",
    no_args_is_help=True,
    add_completion=True,
)

app.command(
    "sandbox",
    short_help=cmd_sandbox.SHORT_HELP,
    context_settings=cmd_sandbox.CONTEXT_SETTINGS,
    add_help_option=False,
)(cmd_sandbox.sandbox)
app.command("operator")(cmd_operator.operator)
app.command("gateway")(cmd_gateway.gateway)
app.command("run")(cmd_run.run)
app.command("submit", epilog=cmd_submit.EPILOG)(cmd_submit.submit)
app.command("status", epilog=cmd_status.STATUS_EPILOG)(cmd_status.status)
app.command("watch", epilog=cmd_status.WATCH_EPILOG)(cmd_status.watch)
app.command("results", epilog=cmd_results.EPILOG)(cmd_results.results)
app.command("validate", epilog=cmd_validate.EPILOG)(cmd_validate.validate)
app.command("estimate", epilog=cmd_estimate.EPILOG)(cmd_estimate.estimate)
app.add_typer(cmd_keys.app, name="keys")
app.add_typer(cmd_webhooks.app, name="webhooks")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
