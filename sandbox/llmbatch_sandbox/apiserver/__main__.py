"""``python -m llmbatch_sandbox.apiserver [--port P] [--kubeconfig PATH]``: the API emulator
alone, in the foreground (Ctrl-C stops it). Prints ``URL=...`` and ``KUBECONFIG=...``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import tempfile
from pathlib import Path

from llmbatch_sandbox.apiserver.server import ApiServer, write_kubeconfig


async def _serve(host: str, port: int, kubeconfig: Path, verbose: bool) -> None:
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    server = ApiServer(host, port, access_log=verbose)
    url = await server.start()
    write_kubeconfig(url, kubeconfig)
    print(f"URL={url}", flush=True)
    print(f"KUBECONFIG={kubeconfig}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Kubernetes API emulator for trying and testing llmbatch (not a cluster)."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        default=Path(tempfile.gettempdir()) / "llmbatch-apiserver.kubeconfig",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.host, args.port, args.kubeconfig, args.verbose))


if __name__ == "__main__":
    main()
