"""The child Job manifests, built with no cluster."""

from __future__ import annotations

import json

from llmbatch.controller.build_jobs import (
    build_extra_run_job,
    build_finalize_job,
    build_plan_job,
    build_runner_job,
)
from llmbatch.controller.config import OperatorConfig
from llmbatch.controller.names import child_name, finalize_job_name, plan_job_name, run_job_name
from tests.controller.factories import at, batchjob

CONFIG = OperatorConfig(
    runner_image="example/runner:1",
    default_s3_endpoint="http://s3:9000",
    runner_env=(("VLLM_CPU_KVCACHE_SPACE", "1"),),
)


def env_of(job: dict) -> dict:  # type: ignore[type-arg]
    return {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_runner_job_is_an_indexed_job_per_shard() -> None:
    body = batchjob(
        parallelism=3,
        maxRetries=2,
        resources={"gpu": 2, "gpuResourceName": "amd.com/gpu", "cpu": "4", "memory": "16Gi"},
        nodeSelector={"gpu": "a100"},
        tolerations=[{"key": "gpu", "operator": "Exists"}],
        affinity={"nodeAffinity": {}},
        priorityClassName="batch-low",
        queueName="team-a",
        model={"name": "tiny-qwen", "source": "/models/tiny", "engineArgs": {"max_model_len": 512}},
    )
    job = build_runner_job(body, CONFIG, at(0))
    spec = job["spec"]
    assert job["metadata"]["name"] == "demo-run"
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    owner = job["metadata"]["ownerReferences"][0]
    assert owner["uid"] == "uid-1" and owner["controller"] and owner["blockOwnerDeletion"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == 3
    assert spec["backoffLimitPerIndex"] == 2
    # The operator decides when one failed index fails the batch (see compute).
    assert "maxFailedIndexes" not in spec
    assert spec["suspend"] is True  # Kueue admits by unsuspending
    # One hour to the deadline plus the grace margin.
    assert spec["activeDeadlineSeconds"] == 3600 + CONFIG.deadline_grace_seconds
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0]["action"] == "Ignore"
    assert rules[0]["onPodConditions"][0]["type"] == "DisruptionTarget"
    assert rules[1] == {
        "action": "FailIndex",
        "onExitCodes": {"containerName": "runner", "operator": "In", "values": [42, 43]},
    }
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["nodeSelector"] == {"gpu": "a100"}
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists"}]
    assert pod["priorityClassName"] == "batch-low"
    assert pod["affinity"] == {"nodeAffinity": {}}
    container = pod["containers"][0]
    assert container["image"] == "example/runner:1"
    assert container["resources"]["limits"] == {"cpu": "4", "memory": "16Gi", "amd.com/gpu": "2"}
    assert container["resources"]["requests"] == {"cpu": "4", "memory": "16Gi"}
    command = container["command"]
    assert command[:2] == ["llmbatch-runner", "run"]
    flags = dict(zip(command[2::2], command[3::2], strict=True))
    assert flags["--input"] == "s3://llmbatch/in/demo.jsonl"
    assert flags["--model"] == "/models/tiny"
    assert flags["--served-model-name"] == "tiny-qwen"
    assert json.loads(flags["--engine-args"]) == {"max_model_len": 512}
    assert flags["--deadline"] == "2026-01-01T13:00:00Z"


def test_credentials_are_secret_references_never_values() -> None:
    job = build_runner_job(batchjob(), CONFIG, at(0))
    env = env_of(job)
    assert env["LLMBATCH_SHARD_COUNT"]["value"] == "2"
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://s3:9000"
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert "value" not in env[key]
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "llmbatch-s3", "key": key}
    assert env["VLLM_CPU_KVCACHE_SPACE"]["value"] == "1"


def test_spec_storage_endpoint_wins_over_the_default() -> None:
    body = batchjob(
        storage={"endpoint": "https://minio.example", "region": "eu-1", "secretRef": {"name": "s"}}
    )
    env = env_of(build_runner_job(body, CONFIG, at(0)))
    assert env["AWS_ENDPOINT_URL"]["value"] == "https://minio.example"
    assert env["AWS_REGION"]["value"] == "eu-1"


def test_runner_image_override_and_no_gpu_and_suspend() -> None:
    body = batchjob(runnerImage="mine:2", resources={"gpu": 0}, suspend=True)
    job = build_runner_job(body, CONFIG, at(0))
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "mine:2"
    assert "resources" not in container
    assert job["spec"]["suspend"] is True
    assert "kueue.x-k8s.io/queue-name" not in job["metadata"]["labels"]


def test_finalize_job_is_cpu_only_with_the_reason() -> None:
    body = batchjob(resources={"gpu": 4}, nodeSelector={"gpu": "a100"})
    job = build_finalize_job(body, CONFIG, "expired")
    assert job["metadata"]["name"] == "demo-finalize"
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert "resources" not in container and "nodeSelector" not in pod
    assert container["command"][-2:] == ["--reason", "expired"]
    assert container["command"][:2] == ["llmbatch-runner", "finalize"]
    assert "--shard-count" in container["command"]
    assert (
        env_of(job)["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "llmbatch-s3"
    )


def test_plan_job_is_one_cpu_pod_that_fails_at_once_on_a_bad_input() -> None:
    body = batchjob(
        resources={"gpu": 4},
        nodeSelector={"gpu": "a100"},
        priorityClassName="batch-low",
        model={"name": "m", "source": "s3://models/m/", "chatTemplate": "{{ messages }}"},
        endpoint="/v1/completions",
    )
    job = build_plan_job(body, CONFIG, at(0))
    spec = job["spec"]
    assert job["metadata"]["name"] == "demo-plan"
    assert job["metadata"]["labels"]["llmbatch.io/role"] == "plan"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert "completionMode" not in spec and spec["completions"] == 1
    assert spec["backoffLimit"] == CONFIG.plan_backoff_limit
    assert spec["activeDeadlineSeconds"] == 3600 + CONFIG.deadline_grace_seconds
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0]["onPodConditions"][0]["type"] == "DisruptionTarget"
    assert rules[1] == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "runner", "operator": "In", "values": [42]},
    }
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert pod["restartPolicy"] == "Never" and "nodeSelector" not in pod
    assert pod["priorityClassName"] == "batch-low"
    assert container["command"] == [
        "llmbatch-runner",
        "plan",
        "--input",
        "s3://llmbatch/in/demo.jsonl",
        "--output",
        "s3://llmbatch/out/demo/",
        "--model",
        "s3://models/m/",
        "--served-model-name",
        "m",
        "--endpoint",
        "/v1/completions",
        "--engine-args",
        "{}",
    ]
    # No GPU; modest CPU and memory.
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"memory": "1Gi"},
    }
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    # The same image and storage settings as the finalize Job.
    finalize = build_finalize_job(body, CONFIG, "none")
    assert container["image"] == finalize["spec"]["template"]["spec"]["containers"][0]["image"]
    plan_env, finalize_env = env_of(job), env_of(finalize)
    assert plan_env.pop("LLMBATCH_CHAT_TEMPLATE")["value"] == "{{ messages }}"
    assert plan_env == finalize_env


def test_every_runner_container_ends_with_its_log_tail_as_termination_message() -> None:
    # The runner writes no /dev/termination-log: without the fallback a failed pod's
    # termination message is empty, and the operator's failure messages quote nothing.
    body = batchjob(parallelism=2, maxParallelism=4)
    jobs = [
        build_runner_job(body, CONFIG, at(0)),
        build_extra_run_job(body, CONFIG, at(0), 1),
        build_plan_job(body, CONFIG, at(0)),
        build_finalize_job(body, CONFIG, "none"),
    ]
    policies = {
        job["metadata"]["name"]: [
            c.get("terminationMessagePolicy") for c in job["spec"]["template"]["spec"]["containers"]
        ]
        for job in jobs
    }
    assert policies == {
        name: ["FallbackToLogsOnError"]
        for name in ("demo-run", "demo-run-1", "demo-plan", "demo-finalize")
    }


def test_names_are_deterministic_and_fit_a_dns_label() -> None:
    assert run_job_name("demo") == "demo-run"
    long = "x" * 250
    assert run_job_name(long) == run_job_name(long)
    assert len(run_job_name(long)) <= 63 and len(finalize_job_name(long)) <= 63
    assert len(plan_job_name(long)) <= 63 and plan_job_name("demo") == "demo-plan"
    assert run_job_name(long) != run_job_name("x" * 249)
    dotted = child_name("a.b", "-run")
    assert "." not in dotted and dotted.endswith("-run")
    assert child_name("a.b", "-run") != child_name("a-b", "-run")


def test_chat_template_and_batch_name_reach_the_runner() -> None:
    body = batchjob(model={"name": "m", "source": "/m", "chatTemplate": "{{ messages }}"})
    env = env_of(build_runner_job(body, CONFIG, at(0)))
    assert env["LLMBATCH_CHAT_TEMPLATE"]["value"] == "{{ messages }}"
    assert env["LLMBATCH_BATCHJOB"]["value"] == "demo"
    assert env_of(build_finalize_job(body, CONFIG, "none"))["LLMBATCH_BATCHJOB"]["value"] == "demo"


def test_user_strings_are_kept_literal_for_the_kubelet() -> None:
    body = batchjob(
        input="s3://llmbatch/in/$(AWS_SECRET_ACCESS_KEY).jsonl",
        storage={"endpoint": "http://s3/$(X)", "secretRef": {"name": "s"}},
        model={"name": "m", "source": "/m", "chatTemplate": "$(HOME)", "engineArgs": {"k": "$$"}},
    )
    job = build_runner_job(body, CONFIG, at(0))
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "s3://llmbatch/in/$$(AWS_SECRET_ACCESS_KEY).jsonl" in command
    assert '{"k":"$$$$"}' in command
    env = env_of(job)
    assert env["LLMBATCH_CHAT_TEMPLATE"]["value"] == "$$(HOME)"
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://s3/$$(X)"
    finalize = build_finalize_job(body, CONFIG, "none")
    assert (
        "s3://llmbatch/in/$$(AWS_SECRET_ACCESS_KEY).jsonl"
        in (finalize["spec"]["template"]["spec"]["containers"][0]["command"])
    )
