"""A whole batch on this machine, no cluster (``llmbatch run``): the plan, one shard, then
finalize, writing the same files a cluster does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmbatch.api.documents import FinalizeReason
from llmbatch.api.exitcodes import ExitCode
from llmbatch.api.lines import Endpoint
from llmbatch.runner.finalize import FinalizeConfig, finalize
from llmbatch.runner.run import RunConfig, StopSignal, run_shard
from llmbatch.storage import StorageSettings


def default_served_name(model_source: str) -> str:
    """hf://org/name serves as org/name; a path or s3:// prefix as its last component."""
    if model_source.startswith("hf://"):
        return model_source[len("hf://") :]
    return model_source.rstrip("/").rsplit("/", 1)[-1]


def _plan(config: RunConfig, options: Mapping[str, Any]) -> None:
    """The plan step, as the operator's plan Job runs it (a plan already there stands)."""
    from llmbatch.runner.plan import PlanConfig, make_plan

    make_plan(
        PlanConfig(
            input_uri=config.input_uri,
            output_uri=config.output_uri,
            model_source=config.model_source,
            served_model_name=config.served_model_name,
            endpoint=config.endpoint,
            settings=config.settings,
            batch_name=config.batch_name,
            engine_args=config.engine_args,
            chat_template=config.chat_template,
            **dict(options),
        )
    )


def run_local(
    input_uri: str,
    output_uri: str,
    model_source: str,
    served_model_name: str | None = None,
    endpoint: Endpoint | str = Endpoint.CHAT_COMPLETIONS,
    engine_args: Mapping[str, Any] | None = None,
    settings: StorageSettings | None = None,
    *,
    engine: Any | None = None,
    metrics_port: int = 0,
    plan_options: Mapping[str, Any] | None = None,
    **run_options: Any,
) -> dict[str, Any]:
    """Plan, run and finalize a batch; return its manifest (with ``exitCode`` of the run).

    ``engine`` reuses an already loaded engine; ``plan_options`` go to PlanConfig
    (chunk_lines, ...), ``run_options`` to RunConfig (deadline, lease_seconds, ...). Raises
    PermanentError like the runner does.
    """
    config = RunConfig(
        input_uri=input_uri,
        output_uri=output_uri,
        model_source=model_source,
        served_model_name=served_model_name or default_served_name(model_source),
        endpoint=Endpoint(endpoint),
        engine_args=dict(engine_args or {}),
        settings=settings,
        metrics_port=metrics_port,
        **run_options,
    )
    _plan(config, plan_options or {})
    stop = StopSignal()
    # Ctrl-C stops like SIGTERM does (exit 44, finished work committed); finalizing with
    # reason cancelled then records every line not finished as batch_cancelled.
    with stop.on_sigterm(also_sigint=True):
        result = run_shard(config, engine=engine, stop=stop)
    reasons: dict[ExitCode, FinalizeReason] = {
        ExitCode.EXPIRED: "expired",
        ExitCode.CANCELLED: "cancelled",
    }
    reason: FinalizeReason = reasons.get(result.exit_code, "none")
    manifest = finalize(
        FinalizeConfig(
            input_uri=input_uri,
            output_uri=output_uri,
            shard_count=1,
            reason=reason,
            batch_name=config.batch_name,
            settings=settings,
        )
    )
    return {**manifest, "exitCode": int(result.exit_code)}
