"""What shards and finalize need before they start: the plan, and the input it describes."""

from __future__ import annotations

from llmbatch.api.layout import OutputLayout
from llmbatch.api.plan import PlanSummary
from llmbatch.runner.errors import PermanentError
from llmbatch.runner.plan import read_plan
from llmbatch.storage import AccessDenied, BucketNotFound, ObjectStore


def require_plan(store: ObjectStore, layout: OutputLayout, missing: str) -> PlanSummary:
    """The plan's summary; PermanentError saying ``missing`` when there is none."""
    try:
        plan = read_plan(store, layout)
    except (BucketNotFound, AccessDenied) as exc:
        raise PermanentError(f"output {layout.prefix} cannot be used: {exc}") from exc
    if plan is None:
        raise PermanentError(f"no plan at {layout.plan_summary}: {missing}")
    return plan


def check_input(store: ObjectStore, uri: str, plan: PlanSummary) -> None:
    """The input exists and has the plan's size: byte ranges of another file would feed the
    engine garbage or the wrong lines."""
    try:
        info = store.head(uri)
    except (BucketNotFound, AccessDenied) as exc:
        raise PermanentError(f"input {uri} cannot be read: {exc}") from exc
    if info is None:
        raise PermanentError(f"input {uri} does not exist")
    if info.size != plan.input_bytes:
        raise PermanentError(
            f"input {uri} changed since the plan: it has {info.size} bytes, the plan read "
            f"{plan.input_bytes}"
        )
