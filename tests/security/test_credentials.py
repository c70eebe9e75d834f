"""S3 credentials stay in their Secret: a BatchJob cannot hold them, the Jobs the operator
builds reference them (secretKeyRef) instead of copying them, settings objects do not print
them, and the gateway's BatchJobs carry only the Secret's name.

The end-to-end half (operator log, Events, BatchJob and Job objects, pod logs on a live
sandbox) is in tests/chaos/test_chaos_e2e.py, after the chaos runs."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from llmbatch.api.crd import openapi_schema
from llmbatch.api.schema import to_jsonschema
from llmbatch.controller.build_jobs import SECRET_KEYS, build_finalize_job, build_runner_job
from llmbatch.controller.config import OperatorConfig
from llmbatch.controller.objects import storage_settings
from llmbatch.controller.validation import check_spec
from llmbatch.storage import StorageSettings
from tests.controller.factories import CREATED, batchjob
from tests.gateway.conftest import NAMESPACE, GatewayEnv

ACCESS_KEY = "AKIAEXAMPLEKEYID0001"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SENSITIVE = ("SECRET", "PASSWORD", "TOKEN", "ACCESS_KEY", "CREDENTIAL")


def _containers(job: dict[str, Any]) -> list[dict[str, Any]]:
    pod = job["spec"]["template"]["spec"]
    return list(pod.get("initContainers") or []) + list(pod["containers"])


@pytest.mark.parametrize("which", ["run", "finalize"])
def test_job_env_references_the_secret_and_copies_no_value(which: str) -> None:
    body = batchjob(storage={"secretRef": {"name": "team-s3"}, "endpoint": "http://minio:9000"})
    config = OperatorConfig(runner_image="runner:test")
    job = (
        build_runner_job(body, config, CREATED)
        if which == "run"
        else build_finalize_job(body, config, "none")
    )
    for container in _containers(job):
        env = {item["name"]: item for item in container.get("env") or []}
        for key in SECRET_KEYS:
            assert env[key] == {
                "name": key,
                "valueFrom": {"secretKeyRef": {"name": "team-s3", "key": key}},
            }
        for name, item in env.items():
            if any(word in name.upper() for word in SENSITIVE):
                assert "value" not in item, f"{name} carries a value"
        assert "envFrom" not in container  # no whole-Secret import either
    assert ACCESS_KEY not in json.dumps(job) and SECRET_KEY not in json.dumps(job)


@pytest.mark.parametrize(
    "storage",
    [
        {"accessKeyId": ACCESS_KEY},
        {"secretAccessKey": SECRET_KEY},
        {"credentials": {"AWS_SECRET_ACCESS_KEY": SECRET_KEY}},
        {"secretRef": {"name": "s3", "AWS_SECRET_ACCESS_KEY": SECRET_KEY}},
    ],
)
def test_a_batchjob_cannot_hold_credentials(storage: dict[str, Any]) -> None:
    body = batchjob(storage=storage)
    validator = jsonschema.Draft202012Validator(to_jsonschema(openapi_schema()))
    assert list(validator.iter_errors(body)), "the CRD schema took a credential field"
    spec, problems = check_spec(body["spec"])
    assert spec is None and problems


def test_settings_do_not_print_the_secret() -> None:
    secret = {"data": {}, "stringData": {}}
    settings = StorageSettings(
        endpoint_url="http://s3", region="r", access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY
    )
    assert SECRET_KEY not in repr(settings) and SECRET_KEY not in str(settings)
    spec, _ = check_spec(batchjob()["spec"])
    assert spec is not None
    derived = storage_settings(spec, OperatorConfig(), secret)
    assert SECRET_KEY not in repr(derived)


def test_gateway_batchjobs_name_the_secret_only(gateway_env: GatewayEnv) -> None:
    lines = b"".join(
        json.dumps(
            {
                "custom_id": f"c-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "tiny-qwen", "messages": [{"role": "user", "content": "x"}]},
            }
        ).encode()
        + b"\n"
        for i in range(2)
    )
    with gateway_env.http(gateway_env.key("creds")) as http:
        uploaded = http.post(
            "/v1/files", data={"purpose": "batch"}, files={"file": ("a.jsonl", lines)}
        )
        assert uploaded.status_code == 200, uploaded.text
        created = http.post(
            "/v1/batches",
            json={
                "input_file_id": uploaded.json()["id"],
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
            },
        )
        assert created.status_code == 200, created.text
        answer = created.text
    job = gateway_env.kube.get(NAMESPACE, "batchjobs", gateway_env.batch_name(created.json()["id"]))
    assert job is not None
    assert job["spec"]["storage"]["secretRef"] == {"name": gateway_env.config.storage.secret_ref}
    dumped = json.dumps(job)
    for value in (gateway_env.s3.secret_access_key, gateway_env.s3.access_key_id):
        assert value not in dumped
        assert value not in answer
