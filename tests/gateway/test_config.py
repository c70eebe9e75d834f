"""The gateway config file: the example parses, mistakes name their field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from llmbatch.gateway.config import DEFAULT_TIERS, GatewayConfig, load_config

EXAMPLE = Path(__file__).parents[2] / "examples" / "gateway-config.yaml"


def test_example_config_parses() -> None:
    config = load_config(EXAMPLE)
    assert config.tiers == DEFAULT_TIERS
    assert config.storage.uri("tenants", "a") == "s3://llmbatch/gateway/tenants/a"
    assert config.storage.secret_ref == "llmbatch-s3"
    model = config.models["qwen2.5-0.5b-instruct"]
    assert model.parallelism == 2 and model.resources.gpu == 1
    assert config.limits.max_file_bytes == 200 * 1024 * 1024


def test_defaults_and_secret_ref_forms() -> None:
    config = GatewayConfig.model_validate(
        {"storage": {"bucket": "bkt", "secretRef": {"name": "creds"}}}
    )
    assert config.namespace == "default"
    assert config.tiers == {"free": 100, "basic": 500, "premium": 2000, "enterprise": 10000}
    assert config.rate_limit.window_seconds == 3600
    assert config.storage.secret_ref == "creds"
    local = GatewayConfig.model_validate({"storage": {"root": "file:///srv/llmbatch"}})
    assert local.storage.uri("x") == "file:///srv/llmbatch/gateway/x"


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"storage": {}}, "storage"),
        ({"storage": {"bucket": "bkt"}, "tiers": {"free": 0}}, "tiers"),
        ({"storage": {"bucket": "bkt"}, "namespace": "Bad_NS"}, "namespace"),
        ({"storage": {"bucket": "bkt"}, "unknown": 1}, "unknown"),
    ],
)
def test_mistakes_name_the_field(bad: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        GatewayConfig.model_validate(bad)


def test_a_model_that_cannot_be_a_batchjob_fails_at_load() -> None:
    with pytest.raises(ValidationError, match=r"models\.bad name"):
        GatewayConfig.model_validate(
            {"storage": {"bucket": "bkt"}, "models": {"bad name": {"source": "/m"}}}
        )
    with pytest.raises(ValidationError, match=r"models\.m"):
        GatewayConfig.model_validate(
            {"storage": {"bucket": "bkt"}, "models": {"m": {"source": "ftp://nope"}}}
        )
