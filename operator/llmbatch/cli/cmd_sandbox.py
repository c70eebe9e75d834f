"""`llmbatch sandbox` when the llm-batch-sandbox distribution is not installed.

The sandbox (a local stand-in for a cluster, for trying and testing) is not part of the
product: the distribution llm-batch-sandbox (folder ``sandbox/``) registers the real command
under the entry-point group ``llmbatch.commands``, and main.py's group loads it in place of this
one. This stand-in keeps ``sandbox`` in ``llmbatch --help`` and says what to install."""

from __future__ import annotations

import typer

DISTRIBUTION = "llm-batch-sandbox"
SHORT_HELP = (
    "Run a single-machine sandbox cluster for trying and testing (not installed: "
    f"pip install {DISTRIBUTION})."
)
# Whatever options the real command takes, the answer is the same message.
CONTEXT_SETTINGS = {"ignore_unknown_options": True, "allow_extra_args": True}


def sandbox() -> None:
    """Run a single-machine sandbox cluster for trying and testing: NOT a production cluster.

    Not installed: the sandbox is the separate distribution llm-batch-sandbox.
    """
    typer.echo(
        f"llmbatch sandbox: the sandbox is not installed. It is the separate distribution "
        f"{DISTRIBUTION}, for trying and testing: `pip install {DISTRIBUTION}` (from a "
        "checkout: `pip install -e ./sandbox`, or `make install`).",
        err=True,
    )
    raise typer.Exit(1)
