"""``llmbatch status NAME`` and ``llmbatch watch NAME``: a BatchJob's phase, counts,
throughput, ETA and deadline, once or live until the batch finishes."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from pathlib import Path
from typing import Any

import typer

from llmbatch.cli.options import (
    FORMAT_OPTION,
    KUBECONFIG_OPTION,
    NAMESPACE_OPTION,
    OutputFormat,
    fail,
    print_json,
)

STATUS_EPILOG = """\
Examples:

  llmbatch status summarize-3f2a9c1d -n batch

  llmbatch status summarize-3f2a9c1d -o json | jq .status.requestCounts
"""

WATCH_EPILOG = """\
Example:

  llmbatch watch summarize-3f2a9c1d -n batch && llmbatch results summarize-3f2a9c1d

Exit codes: 0 Succeeded, 1 Failed, 3 Expired, 4 Cancelled, 5 not found, 124 --timeout passed.
"""


class WatchExit(IntEnum):
    """``watch`` exits with the batch's outcome, so scripts can chain on it."""

    SUCCEEDED = 0
    FAILED = 1
    EXPIRED = 3
    CANCELLED = 4
    NOT_FOUND = 5
    TIMEOUT = 124


_OUTCOME = {
    "Succeeded": WatchExit.SUCCEEDED,
    "Failed": WatchExit.FAILED,
    "Expired": WatchExit.EXPIRED,
    "Cancelled": WatchExit.CANCELLED,
}


@dataclass(frozen=True)
class Snapshot:
    """What the status says at one moment, reduced to what the display shows."""

    name: str
    phase: str
    total: int | None
    completed: int
    failed: int
    throughput: float | None
    eta: datetime | None
    deadline: datetime | None
    sla_at_risk: bool
    message: str

    @property
    def done(self) -> int:
        return self.completed + self.failed

    @property
    def remaining(self) -> bool:
        """Requests are left to run (an ETA means something)."""
        return not self.terminal and (self.total is None or self.done < self.total)

    @property
    def terminal(self) -> bool:
        return self.phase in _OUTCOME

    @classmethod
    def of(cls, obj: dict[str, Any]) -> Snapshot:
        from llmbatch.api.timefmt import parse_time

        status: dict[str, Any] = obj.get("status") or {}
        counts: dict[str, Any] = status.get("requestCounts") or {}
        total = counts.get("total")
        conditions = status.get("conditions") or []
        at_risk = any(
            c.get("type") == "SLAAtRisk" and c.get("status") == "True" for c in conditions
        )
        return cls(
            name=str(obj.get("metadata", {}).get("name", "")),
            phase=str(status.get("phase") or "Pending"),
            total=int(total) if total else None,
            completed=int(counts.get("completed") or 0),
            failed=int(counts.get("failed") or 0),
            throughput=float(status["throughput"])
            if status.get("throughput") is not None
            else None,
            eta=parse_time(status.get("eta")),
            deadline=parse_time(status.get("deadline")),
            sla_at_risk=at_risk,
            message=str(status.get("message") or status.get("reason") or ""),
        )

    def line(self, now: datetime) -> str:
        """One plain line for logs and non-terminal output."""
        progress = f"{self.done}/{self.total}" if self.total else f"{self.done}/?"
        parts = [f"{self.phase:<10}", progress]
        if self.failed:
            parts.append(f"failed {self.failed}")
        if self.throughput is not None:
            parts.append(f"{self.throughput:.1f} tok/s")
        if self.eta is not None and self.remaining:
            parts.append(f"eta {relative(self.eta, now)}")
        if self.deadline is not None and not self.terminal:
            parts.append(f"deadline {relative(self.deadline, now)}")
        if self.sla_at_risk and not self.terminal:
            parts.append("SLA AT RISK")
        if self.message:
            parts.append(f"- {self.message}")
        return "  ".join(parts)


def relative(when: datetime, now: datetime) -> str:
    """``in 1h5m`` or ``3m ago``, at most two units."""
    delta = when - now
    seconds = abs(int(delta.total_seconds()))
    units = [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)]
    parts: list[str] = []
    for unit, size in units:
        if seconds >= size or (unit == "s" and not parts):
            n, seconds = divmod(seconds, size)
            parts.append(f"{n}{unit}")
        if len(parts) == 2:
            break
    text = "".join(parts)
    return f"in {text}" if delta >= timedelta(0) else f"{text} ago"


def _connect(kubeconfig: Path | None, namespace: str | None) -> Any:
    from llmbatch.cli.kube import BatchJobClient, KubeError

    try:
        return BatchJobClient.connect(kubeconfig, namespace)
    except KubeError as exc:
        raise fail(str(exc)) from exc


def status(
    name: str = typer.Argument(..., help="BatchJob name."),
    namespace: str | None = NAMESPACE_OPTION,
    kubeconfig: Path | None = KUBECONFIG_OPTION,
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Show a BatchJob's phase, request counts, throughput, ETA, deadline and conditions."""
    from llmbatch.cli.kube import BatchJobNotFound, KubeError

    client = _connect(kubeconfig, namespace)
    try:
        obj = client.get(name)
    except BatchJobNotFound as exc:
        raise fail(str(exc), WatchExit.NOT_FOUND) from exc
    except KubeError as exc:
        raise fail(str(exc)) from exc
    if output_format is OutputFormat.JSON:
        print_json(
            {
                "name": name,
                "namespace": client.namespace,
                "spec": obj.get("spec", {}),
                "status": obj.get("status") or {},
            }
        )
        return
    _print_status(obj, datetime.now(UTC))


def _print_status(obj: dict[str, Any], now: datetime) -> None:
    from rich.console import Console
    from rich.table import Table

    snap = Snapshot.of(obj)
    status: dict[str, Any] = obj.get("status") or {}
    spec: dict[str, Any] = obj.get("spec") or {}
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    rows: list[tuple[str, str]] = [
        ("Name", f"{obj.get('metadata', {}).get('namespace', '')}/{snap.name}"),
        ("Phase", snap.phase + (f" ({status['reason']})" if status.get("reason") else "")),
        ("Model", str(spec.get("model", {}).get("name", ""))),
        (
            "Requests",
            f"{snap.done}/{snap.total if snap.total else '?'} "
            f"(completed {snap.completed}, failed {snap.failed})",
        ),
    ]
    if snap.throughput is not None:
        rows.append(("Throughput", f"{snap.throughput:.1f} tokens/s"))
    usage = status.get("usage") or {}
    if usage:
        rows.append(
            (
                "Tokens",
                f"prompt {usage.get('promptTokens', 0)}, "
                f"completion {usage.get('completionTokens', 0)}",
            )
        )
    if snap.eta is not None:
        rows.append(("ETA", f"{snap.eta.isoformat()} ({relative(snap.eta, now)})"))
    if snap.deadline is not None:
        risk = " [red]SLA at risk[/red]" if snap.sla_at_risk else ""
        rows.append(
            ("Deadline", f"{snap.deadline.isoformat()} ({relative(snap.deadline, now)}){risk}")
        )
    if snap.message:
        rows.append(("Message", snap.message))
    for key, label in (("outputFile", "Output"), ("errorFile", "Errors"), ("jobName", "Job")):
        if status.get(key):
            rows.append((label, str(status[key])))
    for row in rows:
        table.add_row(*row)
    console = Console(highlight=False)
    console.print(table)
    conditions = status.get("conditions") or []
    if conditions:
        ctable = Table("Condition", "Status", "Reason", "Message", box=None, pad_edge=False)
        for c in conditions:
            ctable.add_row(
                str(c.get("type", "")),
                str(c.get("status", "")),
                str(c.get("reason", "")),
                str(c.get("message", "")),
            )
        console.print()
        console.print(ctable)


Renderer = Callable[[Snapshot], None]


class TransientFetchError(Exception):
    """A poll that failed in a way worth retrying (API server restarting, network blip)."""


def follow(
    fetch: Callable[[], dict[str, Any]],
    render: Renderer,
    *,
    interval: float,
    timeout: float | None,
    max_errors: int = 10,
    on_error: Callable[[Exception], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> WatchExit:
    """Poll ``fetch`` until the batch reaches a terminal phase or ``timeout`` passes; hand
    each snapshot to ``render``. The status is the operator's aggregate, updated every few
    seconds, so polling a GET costs less than holding a watch open for hours.

    A watch may run for hours: up to ``max_errors`` failed polls in a row
    (TransientFetchError) are reported to ``on_error`` and retried, with a growing pause."""
    start = clock()
    errors = 0
    while True:
        try:
            snap = Snapshot.of(fetch())
        except TransientFetchError as exc:
            errors += 1
            if errors > max_errors:
                raise
            if on_error is not None:
                on_error(exc)
        else:
            errors = 0
            render(snap)
            if snap.terminal:
                return _OUTCOME[snap.phase]
        if timeout is not None and clock() - start >= timeout:
            return WatchExit.TIMEOUT
        sleep(interval * min(2**errors, 30))


class PlainRenderer:
    """A line each time something visible changes: for logs, CI and pipes."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo = echo
        self.last: Snapshot | None = None

    def __call__(self, snap: Snapshot) -> None:
        # Relative times tick every second; print only when the state itself moved.
        if snap != self.last:
            self.last = snap
            self.echo(f"{snap.name}  {snap.line(datetime.now(UTC))}")


class ProgressRenderer:
    """A rich progress bar: counts, throughput, ETA and time to the deadline."""

    def __init__(self, console: Any) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.progress = Progress(
            TextColumn("[bold]{task.fields[phase]:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]}"),
            TextColumn("{task.fields[throughput]}"),
            TextColumn("{task.fields[eta]}"),
            TextColumn("{task.fields[deadline]}"),
            console=console,
            transient=False,
        )
        self.task: Any = None

    def __enter__(self) -> ProgressRenderer:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, snap: Snapshot) -> None:
        now = datetime.now(UTC)
        if self.task is None:
            # Every field a column reads must exist before the first refresh.
            self.task = self.progress.add_task(
                snap.name, total=snap.total, phase="", failed="", throughput="", eta="", deadline=""
            )
        self.progress.update(
            self.task,
            total=snap.total,
            completed=snap.done,
            phase=snap.phase,
            failed=f"[red]failed {snap.failed}[/red]" if snap.failed else "",
            throughput=f"{snap.throughput:.1f} tok/s" if snap.throughput is not None else "",
            eta=f"ETA {relative(snap.eta, now)}" if snap.eta and snap.remaining else "",
            deadline=self._deadline(snap, now),
            # Draw each new state now: the next auto-refresh may come after the batch moved on.
            refresh=True,
        )

    @staticmethod
    def _deadline(snap: Snapshot, now: datetime) -> str:
        if snap.deadline is None or snap.terminal:
            return ""
        text = f"deadline {relative(snap.deadline, now)}"
        return f"[red]{text} SLA at risk[/red]" if snap.sla_at_risk else text


def watch(
    name: str = typer.Argument(..., help="BatchJob name."),
    namespace: str | None = NAMESPACE_OPTION,
    kubeconfig: Path | None = KUBECONFIG_OPTION,
    interval: float = typer.Option(2.0, "--interval", min=0.01, help="Seconds between polls."),
    timeout: float | None = typer.Option(
        None, "--timeout", min=0, help="Give up after this many seconds (exit 124)."
    ),
    plain: bool = typer.Option(
        False, "--plain", help="Print a line per change instead of a progress bar."
    ),
) -> None:
    """Follow a BatchJob live until it finishes; exit with its outcome (0 on Succeeded)."""
    from rich.console import Console

    from llmbatch.cli.kube import BatchJobNotFound, KubeError

    client = _connect(kubeconfig, namespace)

    def fetch() -> dict[str, Any]:
        try:
            return dict(client.get(name))
        except BatchJobNotFound as exc:
            raise fail(str(exc), WatchExit.NOT_FOUND) from exc
        except KubeError as exc:
            if exc.status in (401, 403):  # retrying cannot fix credentials or RBAC
                raise fail(str(exc)) from exc
            raise TransientFetchError(str(exc)) from exc

    def warn(exc: Exception) -> None:
        typer.echo(f"warning: {exc}; retrying", err=True)

    console = Console(highlight=False)
    last: list[Snapshot] = []

    def remember(render: Renderer) -> Renderer:
        def wrapped(snap: Snapshot) -> None:
            last[:] = [snap]
            render(snap)

        return wrapped

    try:
        if plain or not console.is_terminal:
            renderer: Renderer = PlainRenderer(typer.echo)
            outcome = follow(
                fetch, remember(renderer), interval=interval, timeout=timeout, on_error=warn
            )
        else:
            with ProgressRenderer(console) as bar:
                outcome = follow(
                    fetch, remember(bar), interval=interval, timeout=timeout, on_error=warn
                )
    except TransientFetchError as exc:
        raise fail(f"giving up after repeated errors: {exc}") from exc
    if outcome is WatchExit.TIMEOUT:
        phase = last[0].phase if last else "unknown"
        typer.echo(f"timed out after {timeout}s; {name} is still {phase}", err=True)
    elif last:
        typer.echo(
            f"{name} {last[0].phase.lower()}" + (f": {last[0].message}" if last[0].message else "")
        )
    raise typer.Exit(int(outcome))
