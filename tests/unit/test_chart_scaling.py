"""The chart's operator.scaling values reach the operator as LLMBATCH_SCALING_*: the chart's
defaults are the operator's own, a value set in the chart is the one the operator reads, and
the values schema refuses what the operator would refuse."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import helm_python as helm
import pytest

from llmbatch.controller.config import SCALING_ENV, scaling_from_env
from llmbatch.controller.policy.scaling import ScalingSettings
from tests.unit.test_chart import CHART, FULL, one, render


def scaling_env(values: dict[str, Any]) -> dict[str, str]:
    deployment = one(render(values), "Deployment", FULL)
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"] if e["name"] in SCALING_ENV}


def test_chart_defaults_are_the_operator_defaults() -> None:
    env = scaling_env({})
    assert set(env) == set(SCALING_ENV)
    assert scaling_from_env(env) == ScalingSettings()


def test_chart_values_reach_the_operator() -> None:
    env = scaling_env(
        {"operator": {"scaling": {"intervalSeconds": 30, "marginShare": 0.05, "hysteresis": 2.5}}}
    )
    settings = scaling_from_env(env)
    assert settings.interval == timedelta(seconds=30)
    assert (settings.margin_share, settings.hysteresis) == (0.05, 2.5)
    assert settings.rate_window == ScalingSettings().rate_window


@pytest.mark.parametrize(
    ("scaling", "where"),
    [
        ({"rateWindowSeconds": 15}, "rateWindowSeconds"),
        ({"intervalSeconds": 0}, "intervalSeconds"),
        ({"marginShare": 1}, "marginShare"),
        ({"marginMinSeconds": -1}, "marginMinSeconds"),
        ({"hysteresis": 1}, "hysteresis"),
        ({"hysteresis": "2"}, "hysteresis"),
        ({"cooldown": 60}, "cooldown"),
    ],
)
def test_values_schema_refuses_what_the_operator_refuses(
    scaling: dict[str, Any], where: str
) -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError) as info:
        chart.validate_schema({"operator": {"scaling": scaling}})
    assert where in str(info.value)
