"""``llmbatch``: one command for users and operators. Each sub-command lives in its own
``cmd_*`` module, which keeps heavy imports (vLLM, kopf, FastAPI) inside the command body so
``llmbatch --help`` stays instant."""

from __future__ import annotations

import typer

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
)

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
app.command("submit", epilog=cmd_submit.EPILOG)(cmd_submit.submit)
app.command("status", epilog=cmd_status.STATUS_EPILOG)(cmd_status.status)
app.command("watch", epilog=cmd_status.WATCH_EPILOG)(cmd_status.watch)
app.command("results", epilog=cmd_results.EPILOG)(cmd_results.results)
app.command("validate", epilog=cmd_validate.EPILOG)(cmd_validate.validate)
app.command("estimate", epilog=cmd_estimate.EPILOG)(cmd_estimate.estimate)
app.add_typer(cmd_keys.app, name="keys")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
