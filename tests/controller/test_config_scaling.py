"""The scaling policy's settings are operator configuration (LLMBATCH_SCALING_*): the defaults
are the policy's documented numbers, every bad value is refused with its variable named, and
``llmbatch operator`` stops on one before it starts."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import kopf
import pytest
from typer.testing import CliRunner

from llmbatch.cli.main import app
from llmbatch.controller import config as config_module
from llmbatch.controller.config import (
    SCALING_ENV,
    ConfigError,
    OperatorConfig,
    scaling_from_env,
)
from llmbatch.controller.handle_scaling import with_rate
from llmbatch.controller.policy.scaling import ScalingSettings
from llmbatch.controller.scaling_state import RateWindow
from tests.controller.factories import at
from tests.controller.test_policy_scaling import running_obs


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SCALING_ENV:
        monkeypatch.delenv(name, raising=False)


def test_defaults_are_the_documented_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = OperatorConfig.from_env().scaling
    assert settings == ScalingSettings() == OperatorConfig().scaling
    assert settings.rate_window == timedelta(seconds=90)
    assert settings.interval == timedelta(minutes=1)
    assert (settings.margin_share, settings.hysteresis) == (0.1, 2.0)
    assert (settings.margin_min, settings.margin_max) == (
        timedelta(seconds=15),
        timedelta(minutes=30),
    )
    # An empty variable (a chart value left blank) keeps the default too.
    monkeypatch.setenv("LLMBATCH_SCALING_HYSTERESIS", " ")
    assert OperatorConfig.from_env().scaling.hysteresis == 2.0


def test_values_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "LLMBATCH_SCALING_RATE_WINDOW_SECONDS": "45",
        "LLMBATCH_SCALING_INTERVAL_SECONDS": "20.5",
        "LLMBATCH_SCALING_MARGIN_SHARE": "0.25",
        "LLMBATCH_SCALING_MARGIN_MIN_SECONDS": "0",
        "LLMBATCH_SCALING_MARGIN_MAX_SECONDS": "1e3",
        "LLMBATCH_SCALING_HYSTERESIS": "3",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    assert OperatorConfig.from_env().scaling == ScalingSettings(
        rate_window=timedelta(seconds=45),
        interval=timedelta(seconds=20.5),
        margin_share=0.25,
        margin_min=timedelta(0),
        margin_max=timedelta(seconds=1000),
        hysteresis=3.0,
    )


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("LLMBATCH_SCALING_RATE_WINDOW_SECONDS", "15", "must be more than 15"),
        ("LLMBATCH_SCALING_RATE_WINDOW_SECONDS", "1m", "expected a number"),
        ("LLMBATCH_SCALING_INTERVAL_SECONDS", "0", "must be more than 0 seconds"),
        ("LLMBATCH_SCALING_INTERVAL_SECONDS", "nan", "expected a number"),
        ("LLMBATCH_SCALING_MARGIN_SHARE", "10", "between 0 and 1"),
        ("LLMBATCH_SCALING_MARGIN_SHARE", "0", "between 0 and 1"),
        ("LLMBATCH_SCALING_MARGIN_MIN_SECONDS", "-1", "0 or more"),
        ("LLMBATCH_SCALING_MARGIN_MAX_SECONDS", "10", "at least LLMBATCH_SCALING_MARGIN_MIN"),
        ("LLMBATCH_SCALING_MARGIN_MAX_SECONDS", "inf", "expected a number"),
        ("LLMBATCH_SCALING_HYSTERESIS", "1", "must be more than 1"),
    ],
)
def test_a_bad_value_is_refused_by_name(name: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        scaling_from_env({name: value})
    assert name in str(info.value) and says in str(info.value), info.value


def test_every_bad_value_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        scaling_from_env(
            {"LLMBATCH_SCALING_INTERVAL_SECONDS": "-5", "LLMBATCH_SCALING_HYSTERESIS": "0.5"}
        )
    assert "LLMBATCH_SCALING_INTERVAL_SECONDS=-5" in str(info.value)
    assert "LLMBATCH_SCALING_HYSTERESIS=0.5" in str(info.value)


def test_other_numbers_name_their_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMBATCH_DEADLINE_GRACE", "two minutes")
    with pytest.raises(ConfigError, match="LLMBATCH_DEADLINE_GRACE='two minutes'"):
        OperatorConfig.from_env()


def test_the_operator_does_not_start_on_a_bad_value(monkeypatch: pytest.MonkeyPatch) -> None:
    started: dict[str, Any] = {}
    monkeypatch.setattr(kopf, "run", lambda **kwargs: started.update(kwargs))
    monkeypatch.setattr(config_module, "_active", None)
    monkeypatch.setenv("LLMBATCH_SCALING_HYSTERESIS", "1")
    result = CliRunner().invoke(app, ["operator"])
    assert result.exit_code == 2
    assert "LLMBATCH_SCALING_HYSTERESIS=1: must be more than 1" in result.output
    assert not started


def test_the_rate_window_follows_the_settings() -> None:
    obs = running_obs(at(10))
    rates = RateWindow()
    with_rate(obs, rates, [])
    assert rates.window == 90
    short = ScalingSettings(rate_window=timedelta(seconds=30))
    with_rate(replace(obs, scaling=short), rates, [])
    assert rates.window == 30
