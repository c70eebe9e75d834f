"""``llmbatch``: one command for users and operators. Each sub-command lives in its own
``cmd_*`` module, which keeps heavy imports (vLLM, kopf, FastAPI) inside the command body so
``llmbatch --help`` stays instant."""

from __future__ import annotations

import typer

from llmbatch.cli import cmd_gateway, cmd_keys, cmd_operator, cmd_run, cmd_sandbox

app = typer.Typer(
    name="llmbatch",
    help="Offline LLM batch inference on Kubernetes: run, submit and watch OpenAI-format batches.",
    no_args_is_help=True,
    add_completion=True,
)

app.command("sandbox")(cmd_sandbox.sandbox)
app.command("operator")(cmd_operator.operator)
app.command("gateway")(cmd_gateway.gateway)
app.command("run")(cmd_run.run)
app.add_typer(cmd_keys.app, name="keys")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
