"""`llmbatch sandbox`: a local stand-in for a cluster, for trying and testing the operator.

The product's CLI finds this command through the entry point ``sandbox`` of the group
``llmbatch.commands`` (see sandbox/pyproject.toml); ``llmbatch-sandbox`` runs it on its own.
Heavy imports stay inside the body so that listing the commands stays instant."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def sandbox(
    port: Annotated[
        int, typer.Option("--port", help="API server port on 127.0.0.1 (0: a free one).")
    ] = 0,
    kubeconfig: Annotated[
        Path, typer.Option("--kubeconfig", help="Where to write the kubeconfig.")
    ] = Path(".sandbox/kubeconfig"),
    gpu_slots: Annotated[
        int,
        typer.Option(
            "--gpu-slots",
            min=0,
            help="Concurrent nvidia.com/gpu the single node offers; pods asking for more stay "
            "Pending (Unschedulable), to simulate GPU scarcity.",
        ),
    ] = 2,
    operator: Annotated[
        bool, typer.Option("--operator", help="Also run the operator (`llmbatch operator`).")
    ] = False,
    cpu_manager_policy: Annotated[
        str,
        typer.Option(
            "--cpu-manager-policy",
            help="none, or static: a container whose CPU limit is a whole number runs pinned "
            "to that many cores of its own, like the kubelet's static CPU manager.",
        ),
    ] = "none",
) -> None:
    """Run a single-machine sandbox cluster for trying and testing: NOT a production cluster.

    In one process on 127.0.0.1: a Kubernetes API emulator (enough for kubectl, kopf and the
    Python client), a Job controller and a kubelet that runs each pod's container command as
    a local process (images are recorded, not pulled), and an S3 endpoint (moto) with the
    bucket `llmbatch` and the Secret `default/llmbatch-s3`. The BatchJob CRD is installed.

    When ready it prints `KUBECONFIG=<path>` and `S3_ENDPOINT=<url>`; use them from another
    shell, e.g. `KUBECONFIG=<path> kubectl get batchjobs`. Everything is in memory and is
    gone when it stops (Ctrl-C or SIGTERM, which also stops every pod process).

    Sandbox-only pod annotations: `sandbox.llmbatch.io/preempt` (DisruptionTarget, then
    delete) and `sandbox.llmbatch.io/kill=SIGKILL` (signal the pod's processes).
    """
    import asyncio
    import logging

    from llmbatch_sandbox.bootstrap import BootstrapError
    from llmbatch_sandbox.main import SandboxConfig, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request lines
    from llmbatch_sandbox.kubelet.cpus import POLICIES

    if cpu_manager_policy not in POLICIES:
        raise typer.BadParameter(f"--cpu-manager-policy must be one of {', '.join(POLICIES)}")
    config = SandboxConfig(
        port=port,
        kubeconfig=kubeconfig,
        gpu_slots=gpu_slots,
        operator=operator,
        cpu_manager_policy=cpu_manager_policy,
    )
    try:
        code = asyncio.run(serve(config))
    except (BootstrapError, OSError) as error:
        typer.echo(f"llmbatch sandbox: cannot start: {error}", err=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


def main() -> None:
    """The console script ``llmbatch-sandbox``: the same command without the product's CLI."""
    app = typer.Typer(name="llmbatch-sandbox", add_completion=False)
    app.command("sandbox")(sandbox)
    app()


if __name__ == "__main__":
    main()
