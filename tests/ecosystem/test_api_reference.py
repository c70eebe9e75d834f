"""docs/api-reference.md is generated from the API models and must not drift from them."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from llmbatch.api.batchjob import BatchJobSpec, BatchJobStatus
from llmbatch.api.conditions import Reason
from llmbatch.api.phases import Phase

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_api_reference", ROOT / "hack" / "gen_api_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_is_up_to_date(generator: ModuleType) -> None:
    current = (ROOT / "docs" / "api-reference.md").read_text()
    assert current == generator.render(), (
        "docs/api-reference.md is stale: run python hack/gen_api_reference.py"
    )


def test_every_field_phase_and_reason_is_documented(generator: ModuleType) -> None:
    text = generator.render()
    for model in (BatchJobSpec, BatchJobStatus):
        for name, field in model.model_fields.items():
            assert f"| `{field.alias or name}` |" in text
    for phase in Phase:
        assert f"| `{phase.value}` | `{phase.openai_status()}` |" in text
    for reason in Reason:
        assert f"- `{reason.value}`" in text
    assert "| `input` | string | required |" in text
    assert "**immutable**" in text


def test_check_mode_fails_on_a_stale_file(generator: ModuleType, tmp_path: Path) -> None:
    stale = tmp_path / "api-reference.md"
    stale.write_text("old\n")
    assert generator.main(["--check", "--output", str(stale)]) == 1
    assert generator.main(["--output", str(stale)]) == 0
    assert generator.main(["--check", "--output", str(stale)]) == 0
