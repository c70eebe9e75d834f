"""``llmbatch-runner``: the entrypoint of the runner image (``plan`` a batch, ``run`` a shard,
``finalize``).

Flags fall back to the environment the operator sets on the Job's pods: JOB_COMPLETION_INDEX
(the shard), LLMBATCH_SHARD_COUNT, the AWS_* variables for S3, and LLMBATCH_* tuning knobs.
Exit codes are the contract in llmbatch.api.exitcodes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from llmbatch.api.exitcodes import ExitCode
from llmbatch.api.lines import Endpoint
from llmbatch.api.timefmt import parse_time
from llmbatch.runner.errors import PermanentError
from llmbatch.runner.logs import configure_json_logging

log = logging.getLogger("llmbatch.runner")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


def _batch_name_env() -> str:
    # LLMBATCH_BATCHJOB is what the operator sets on its pods (the BatchJob's name).
    return os.environ.get("LLMBATCH_BATCH_NAME") or os.environ.get("LLMBATCH_BATCHJOB") or ""


def parse_deadline(text: str) -> datetime:
    moment = parse_time(text.strip().replace("z", "Z"))
    if moment is None:
        raise PermanentError(f"--deadline {text!r} is not an RFC 3339 time")
    return moment


def parse_engine_args(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise PermanentError(f"--engine-args is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise PermanentError("--engine-args must be a JSON object")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmbatch-runner", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one shard of a batch through vLLM")
    _add_batch_arguments(run, model_help="hf://org/name, s3://bucket/prefix or path")
    run.add_argument("--shard-index", type=int, default=_env_int("JOB_COMPLETION_INDEX", 0))
    run.add_argument("--shard-count", type=int, default=_env_int("LLMBATCH_SHARD_COUNT", 1))
    run.add_argument(
        "--deadline",
        default=os.environ.get("LLMBATCH_DEADLINE"),
        help="RFC 3339 time after which no request starts",
    )
    run.add_argument(
        "--lease-seconds",
        type=float,
        default=_env_float("LLMBATCH_LEASE_SECONDS", 60.0),
        help="how long a chunk's lease lasts unless renewed (a dead shard's chunk waits this)",
    )
    run.add_argument(
        "--renew-seconds",
        type=float,
        default=_env_float("LLMBATCH_LEASE_RENEW_SECONDS", 15.0),
        help="how often a running chunk's lease is renewed",
    )
    run.add_argument(
        "--progress-seconds", type=float, default=_env_float("LLMBATCH_PROGRESS_SECONDS", 10.0)
    )
    run.add_argument(
        "--grace-period",
        type=float,
        default=_env_float("LLMBATCH_GRACE_SECONDS", 20.0),
        help="seconds from SIGTERM/deadline to exit",
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        default=_env_int("LLMBATCH_RUNNER_METRICS_PORT", 9400),
        help="Prometheus port (0 disables)",
    )
    run.add_argument(
        "--max-in-flight",
        type=int,
        default=_env_int("LLMBATCH_MAX_IN_FLIGHT", 0),
        help="requests kept in the engine (0: twice max_num_seqs)",
    )
    run.add_argument("--model-cache-dir", type=Path, default=None)
    _add_ray_arguments(run)

    fin = sub.add_parser("finalize", help="merge the shards' parts into the batch's output")
    _add_io_arguments(fin)
    fin.add_argument("--shard-count", type=int, default=_env_int("LLMBATCH_SHARD_COUNT", 0))
    fin.add_argument(
        "--reason",
        choices=["none", "expired", "cancelled"],
        default="none",
        help="what lines no shard finished become",
    )
    _add_batch_name(fin)
    _add_plan_parser(sub)
    return parser


def _add_io_arguments(parser: Any) -> None:
    parser.add_argument("--input", required=True, help="input JSONL URI (s3://, file://, path)")
    parser.add_argument("--output", required=True, help="output URI prefix")


def _add_batch_name(parser: Any) -> None:
    parser.add_argument(
        "--batch-name",
        default=_batch_name_env(),
        help="name in logs, metrics and ids (default: the output URI)",
    )


def _add_batch_arguments(parser: Any, model_help: str) -> None:
    """What plan and run both need to read a batch as the engine will: the input and output,
    the model, its served name, the endpoint, engine arguments and chat template."""
    _add_io_arguments(parser)
    parser.add_argument("--model", required=True, help=model_help)
    parser.add_argument("--served-model-name", required=True, help="name lines must use as model")
    parser.add_argument(
        "--endpoint", default=Endpoint.CHAT_COMPLETIONS.value, choices=[e.value for e in Endpoint]
    )
    parser.add_argument(
        "--engine-args",
        default=os.environ.get("LLMBATCH_ENGINE_ARGS"),
        help="vLLM engine arguments as a JSON object",
    )
    parser.add_argument(
        "--chat-template",
        default=os.environ.get("LLMBATCH_CHAT_TEMPLATE"),
        help="Jinja chat template overriding the tokenizer's own",
    )
    _add_batch_name(parser)


def _add_ray_arguments(run: Any) -> None:
    run.add_argument(
        "--backend",
        choices=["vllm", "ray"],
        default=os.environ.get("LLMBATCH_BACKEND", "vllm"),
        help="vllm: drive vLLM here; ray: Ray Data's LLM API (runner/ray_backend.py)",
    )
    run.add_argument(
        "--ray-address",
        default=os.environ.get("LLMBATCH_RAY_ADDRESS") or None,
        help="backend ray: join this Ray cluster (auto in a RayJob); unset: a local instance",
    )
    run.add_argument(
        "--ray-gpus",
        type=int,
        default=_env_int("LLMBATCH_RAY_GPUS", 1),
        help="backend ray: GPUs of the local Ray instance (the pod's GPUs)",
    )
    run.add_argument(
        "--ray-batch-size",
        type=int,
        default=_env_int("LLMBATCH_RAY_BATCH_SIZE", 64),
        help="backend ray: rows per Ray Data batch",
    )


def _add_plan_parser(sub: Any) -> None:
    plan = sub.add_parser("plan", help="validate the input and write the batch's plan")
    _add_batch_arguments(plan, model_help="model source (its tokenizer counts tokens)")
    plan.add_argument("--chunk-lines", type=int, default=_env_int("LLMBATCH_CHUNK_LINES", 1000))
    plan.add_argument(
        "--chunk-bytes", type=int, default=_env_int("LLMBATCH_CHUNK_BYTES", 4 * 1024 * 1024)
    )
    plan.add_argument("--work-dir", type=Path, default=None, help="scratch for the id index")


def _plan(args: argparse.Namespace) -> ExitCode:
    from llmbatch.runner.plan import PlanConfig, make_plan
    from llmbatch.storage import StorageSettings

    summary = make_plan(
        PlanConfig(
            input_uri=args.input,
            output_uri=args.output,
            model_source=args.model,
            served_model_name=args.served_model_name,
            endpoint=Endpoint(args.endpoint),
            settings=StorageSettings.from_env(),
            chunk_lines=args.chunk_lines,
            chunk_bytes=args.chunk_bytes,
            work_dir=args.work_dir,
            batch_name=args.batch_name,
            engine_args=parse_engine_args(args.engine_args),
            chat_template=args.chat_template,
        )
    )
    print(json.dumps({"total": summary.total, "chunks": summary.chunk_count}))
    return ExitCode.OK


def _run(args: argparse.Namespace) -> ExitCode:
    from llmbatch.runner.run import RunConfig, StopSignal, run_shard
    from llmbatch.storage import StorageSettings

    config = RunConfig(
        input_uri=args.input,
        output_uri=args.output,
        model_source=args.model,
        served_model_name=args.served_model_name,
        endpoint=Endpoint(args.endpoint),
        engine_args=parse_engine_args(args.engine_args),
        shard_index=args.shard_index,
        shard_count=args.shard_count,
        deadline=parse_deadline(args.deadline) if args.deadline else None,
        progress_seconds=args.progress_seconds,
        grace_seconds=args.grace_period,
        metrics_port=args.metrics_port,
        batch_name=args.batch_name,
        max_in_flight=args.max_in_flight,
        chat_template=args.chat_template,
        lease_seconds=args.lease_seconds,
        renew_seconds=args.renew_seconds,
        model_cache_dir=args.model_cache_dir,
        settings=StorageSettings.from_env(),
    )
    stop = StopSignal()
    engine = None
    if args.backend == "ray":
        from llmbatch.runner.ray_backend import ray_engine

        engine = ray_engine(config, args.ray_address, args.ray_gpus, args.ray_batch_size, stop)
    with stop.on_sigterm():
        result = run_shard(config, engine=engine, stop=stop)
    log.info(
        "shard finished: %d completed, %d failed, exit %s",
        result.tally.completed,
        result.tally.failed,
        result.exit_code.name,
    )
    return result.exit_code


def _finalize(args: argparse.Namespace) -> ExitCode:
    from llmbatch.runner.finalize import FinalizeConfig, finalize
    from llmbatch.storage import StorageSettings

    manifest = finalize(
        FinalizeConfig(
            input_uri=args.input,
            output_uri=args.output,
            shard_count=args.shard_count or None,
            reason=args.reason,
            batch_name=args.batch_name,
            settings=StorageSettings.from_env(),
        )
    )
    print(json.dumps(manifest["requestCounts"]))
    return ExitCode.OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    shard = getattr(args, "shard_index", None) if args.command == "run" else None
    configure_json_logging(args.batch_name or args.output, shard)
    try:
        code = {"run": _run, "finalize": _finalize, "plan": _plan}[args.command](args)
    except PermanentError as exc:
        log.error("permanent failure: %s", exc)
        print(f"llmbatch-runner: {exc}", file=sys.stderr)
        return ExitCode.PERMANENT
    except KeyboardInterrupt:
        return ExitCode.CANCELLED
    except Exception as exc:
        log.exception("runner failed; the Job will retry: %s", exc)
        return ExitCode.RETRYABLE
    return int(code)


def exit_promptly(code: int) -> None:
    """End the process once its work is committed, skipping the interpreter's teardown.

    When ``main`` returns, every part, checkpoint and progress record has been uploaded (the
    uploader is drained) and the spool is gone. What is left is the normal interpreter exit
    with vLLM, torch and a KV cache loaded: unwinding atexit hooks, garbage and modules took
    2.4 s after a 40 s shard in the runner benchmark and serves nothing. Child processes (a
    vLLM engine core, when the engine runs in its own process) are stopped first, so none
    outlives the runner outside a container too.
    """
    import multiprocessing

    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    for child in children:
        child.join(timeout=5)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def entry() -> None:
    """The console script (and ``python -m``); ``main`` stays callable in-process."""
    exit_promptly(main())


if __name__ == "__main__":
    entry()
