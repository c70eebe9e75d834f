"""The commands of this test package, registered exactly as operator/llmbatch/cli/main.py
registers them (see ECOSYSTEM_COMMANDS), so the tests run before and after main.py wires them."""

from __future__ import annotations

import typer
from typer.main import get_command

from llmbatch.cli import cmd_estimate, cmd_results, cmd_status, cmd_submit, cmd_validate
from llmbatch.cli.main import app as main_app

ECOSYSTEM_COMMANDS = ("submit", "status", "watch", "results", "validate", "estimate")


def register(app: typer.Typer) -> None:
    app.command("submit", epilog=cmd_submit.EPILOG)(cmd_submit.submit)
    app.command("status", epilog=cmd_status.STATUS_EPILOG)(cmd_status.status)
    app.command("watch", epilog=cmd_status.WATCH_EPILOG)(cmd_status.watch)
    app.command("results", epilog=cmd_results.EPILOG)(cmd_results.results)
    app.command("validate", epilog=cmd_validate.EPILOG)(cmd_validate.validate)
    app.command("estimate", epilog=cmd_estimate.EPILOG)(cmd_estimate.estimate)


def registered_in_main() -> bool:
    commands = get_command(main_app).commands  # type: ignore[attr-defined]
    return all(name in commands for name in ECOSYSTEM_COMMANDS)


def cli_app() -> typer.Typer:
    """main.py's app once it registers these commands; until then a stand-in app."""
    if registered_in_main():
        return main_app
    app = typer.Typer(name="llmbatch", no_args_is_help=True)
    register(app)
    return app
