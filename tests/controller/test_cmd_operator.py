"""``llmbatch operator`` turns flags and environment into kopf.run arguments and config."""

from __future__ import annotations

from typing import Any

import kopf
import pytest
from typer.testing import CliRunner

from llmbatch.cli.main import app
from llmbatch.controller import config as config_module


@pytest.fixture
def kopf_run(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    captured: dict[str, Any] = {}
    monkeypatch.setattr(kopf, "run", lambda **kwargs: captured.update(kwargs))
    monkeypatch.setattr(config_module, "_active", None)
    for name in (
        "LLMBATCH_NAMESPACES",
        "LLMBATCH_METRICS_PORT",
        "LLMBATCH_LIVENESS",
        "LLMBATCH_RUNNER_IMAGE",
        "LLMBATCH_DEFAULT_S3_ENDPOINT",
    ):
        monkeypatch.delenv(name, raising=False)
    return captured


def test_namespaces_metrics_and_liveness(kopf_run: dict[str, Any]) -> None:
    result = CliRunner().invoke(
        app,
        [
            "operator",
            "-n",
            "team-a",
            "-n",
            "team-b",
            "--metrics-port",
            "0",
            "--liveness",
            "http://127.0.0.1:1234/healthz",
            "--runner-image",
            "me/runner:2",
            "--default-s3-endpoint",
            "http://minio:9000",
        ],
    )
    assert result.exit_code == 0, result.output
    assert kopf_run["namespaces"] == ["team-a", "team-b"]
    assert kopf_run["clusterwide"] is False and kopf_run["standalone"] is True
    assert kopf_run["liveness_endpoint"] == "http://127.0.0.1:1234/healthz"
    active = config_module.active()
    assert active.runner_image == "me/runner:2"
    assert active.default_s3_endpoint == "http://minio:9000"
    assert active.metrics_port == 0


def test_default_is_cluster_wide_and_env_namespaces_apply(
    kopf_run: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    result = CliRunner().invoke(app, ["operator", "--metrics-port", "0", "--liveness", ""])
    assert result.exit_code == 0, result.output
    assert kopf_run["clusterwide"] is True and kopf_run["liveness_endpoint"] is None
    monkeypatch.setenv("LLMBATCH_NAMESPACES", "x, y")
    monkeypatch.setenv("LLMBATCH_RUNNER_ENV_VLLM_CPU_KVCACHE_SPACE", "1")
    result = CliRunner().invoke(app, ["operator", "--metrics-port", "0"])
    assert result.exit_code == 0, result.output
    assert kopf_run["namespaces"] == ["x", "y"]
    assert ("VLLM_CPU_KVCACHE_SPACE", "1") in config_module.active().runner_env


def test_namespace_and_all_namespaces_conflict(kopf_run: dict[str, Any]) -> None:
    result = CliRunner().invoke(app, ["operator", "-n", "a", "-A"])
    assert result.exit_code == 2
    assert kopf_run == {}
