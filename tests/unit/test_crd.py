"""The generated BatchJob CRD: committed copies match the models, the schema is structural,
bad BatchJobs are rejected with a message naming the field, and the immutability rules hold."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import kubernetes_validate
import pytest
import yaml

from llmbatch.api import crd as crd_module
from llmbatch.api.crd import build_crd, openapi_schema, render_yaml
from llmbatch.api.schema import SchemaError, structural_problems, to_jsonschema, to_structural

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = [
    ROOT / "crds" / "batchjobs.llmbatch.io.yaml",
    ROOT / "charts" / "llm-batch-operator" / "crds" / "batchjobs.llmbatch.io.yaml",
]
IMMUTABLE = {"model", "input", "output", "endpoint", "parallelism"}


def minimal_batchjob() -> dict[str, Any]:
    return {
        "apiVersion": "llmbatch.io/v1alpha1",
        "kind": "BatchJob",
        "metadata": {"name": "demo", "namespace": "default"},
        "spec": {
            "model": {"name": "tiny-qwen", "source": "hf://Qwen/Qwen2.5-0.5B-Instruct"},
            "input": "s3://llmbatch/examples/requests.jsonl",
            "output": "s3://llmbatch/examples/out/",
        },
    }


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(to_jsonschema(openapi_schema()))


def errors_of(validator: jsonschema.Draft202012Validator, obj: dict[str, Any]) -> list[str]:
    """Each error as "<json path>: <message>", the way the API server names the field."""
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(obj)]


# --- the generated files ---------------------------------------------------------------------


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_crd_matches_models(path: Path) -> None:
    assert path.exists(), f"{path} is missing; run make crds"
    assert path.read_text(encoding="utf-8") == render_yaml(), f"{path} is stale; run make crds"


def test_check_mode_reports_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stale = tmp_path / "crd.yaml"
    stale.write_text(render_yaml().replace("shortNames", "shortNamez"), encoding="utf-8")
    assert crd_module.main(["--check", "--write", str(stale)]) == 1
    assert "run make crds" in capsys.readouterr().err
    # --check never rewrites; a plain --write does, and then --check passes.
    assert "shortNamez" in stale.read_text(encoding="utf-8")
    assert crd_module.main(["--write", str(stale)]) == 0
    assert crd_module.main(["--check", "--write", str(stale)]) == 0


def test_crd_identity() -> None:
    crd = build_crd()
    spec = crd["spec"]
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == "batchjobs.llmbatch.io"
    assert spec["group"] == "llmbatch.io"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": "BatchJob",
        "listKind": "BatchJobList",
        "plural": "batchjobs",
        "singular": "batchjob",
        "shortNames": ["bj"],
        "categories": ["all"],
    }
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


def test_printer_columns() -> None:
    [version] = build_crd()["spec"]["versions"]
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    default = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    wide = [c["name"] for c in version["additionalPrinterColumns"] if c.get("priority") == 1]
    assert default == ["Phase", "Progress", "Deadline", "Age"]
    assert wide == ["Model", "Throughput", "ETA", "Shards"]
    assert columns["Shards"]["jsonPath"] == ".status.shardCount"
    assert columns["Phase"]["jsonPath"] == ".status.phase"
    assert columns["Age"] == {
        "name": "Age",
        "type": "date",
        "jsonPath": ".metadata.creationTimestamp",
    }
    assert columns["Model"]["jsonPath"] == ".spec.model.name"
    # A future timestamp in a "date" column prints as <invalid>.
    assert columns["Deadline"]["type"] == "string"
    assert columns["ETA"]["type"] == "string"


def test_crd_is_a_valid_kubernetes_object() -> None:
    kubernetes_validate.validate(build_crd(), kubernetes_validate.latest_version(), strict=True)


# --- structural schema -----------------------------------------------------------------------


def walk(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}.*")
    if "items" in schema:
        yield from walk(schema["items"], f"{path}[]")


def test_schema_is_structural() -> None:
    schema = openapi_schema()
    assert structural_problems(schema) == []
    for path, node in walk(schema):
        assert "type" in node, path
        assert "title" not in node, path
        assert "nullable" not in node, path


def test_structural_problems_are_detected() -> None:
    bad = {
        "type": "object",
        "title": "X",
        "properties": {"a": {"anyOf": [{"type": "string"}]}},
        "additionalProperties": {"type": "string"},
    }
    problems = structural_problems(bad)
    assert any("title" in p for p in problems)
    assert any("mutually exclusive" in p for p in problems)
    assert any(p.startswith(".a: anyOf") for p in problems)
    assert any(p.startswith(".a: type is missing") for p in problems)


def test_free_form_objects_must_be_marked() -> None:
    with pytest.raises(SchemaError, match=r"\.extra: free-form object"):
        to_structural({"type": "object", "properties": {"extra": {"type": "object"}}}, {}, "")


def test_status_is_strict() -> None:
    status = openapi_schema()["properties"]["status"]
    assert "x-kubernetes-preserve-unknown-fields" not in status
    # kopf must not be able to park its bookkeeping in status.
    assert "kopf" not in status["properties"]
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert "type" in conditions["items"]["required"]


def test_preserved_fields_are_the_free_form_ones() -> None:
    preserved = {
        path
        for path, node in walk(openapi_schema())
        if node.get("x-kubernetes-preserve-unknown-fields")
    }
    assert preserved == {".spec.model.engineArgs", ".spec.affinity", ".spec.tolerations[]"}


def test_optional_fields_are_plain_types() -> None:
    spec = openapi_schema()["properties"]["spec"]["properties"]
    assert spec["runnerImage"] == {
        "type": "string",
        "description": "Overrides the chart's runner image.",
        "maxLength": 1024,
    }
    assert spec["endpoint"]["enum"] == [
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/responses",
    ]
    assert spec["endpoint"]["default"] == "/v1/chat/completions"
    assert spec["completionWindow"]["default"] == "24h"
    assert spec["metadata"]["maxProperties"] == 16


# --- bad BatchJobs are rejected, naming the field ----------------------------------------------


def test_minimal_batchjob_is_valid(validator: jsonschema.Draft202012Validator) -> None:
    assert errors_of(validator, minimal_batchjob()) == []


@pytest.mark.parametrize("field", ["input", "output", "model"])
def test_missing_required_field(validator: jsonschema.Draft202012Validator, field: str) -> None:
    obj = minimal_batchjob()
    del obj["spec"][field]
    errors = errors_of(validator, obj)
    assert errors == [f"$.spec: '{field}' is a required property"]


def test_missing_spec(validator: jsonschema.Draft202012Validator) -> None:
    obj = minimal_batchjob()
    del obj["spec"]
    assert errors_of(validator, obj) == ["$: 'spec' is a required property"]


@pytest.mark.parametrize(
    ("patch", "field", "reason"),
    [
        ({"parallelism": 0}, "$.spec.parallelism", "less than the minimum of 1"),
        ({"parallelism": 1001}, "$.spec.parallelism", "greater than the maximum of 1000"),
        ({"endpoint": "/v1/moderations"}, "$.spec.endpoint", "is not one of"),
        ({"completionWindow": "24 hours"}, "$.spec.completionWindow", "does not match"),
        ({"completionWindow": "1x"}, "$.spec.completionWindow", "does not match"),
        ({"completionWindow": ""}, "$.spec.completionWindow", "does not match"),
        ({"input": "http://example.com/a.jsonl"}, "$.spec.input", "does not match"),
        ({"output": "relative/out"}, "$.spec.output", "does not match"),
        ({"model": {"name": "tiny-qwen"}}, "$.spec.model", "'source' is a required property"),
        ({"model": {"name": "", "source": "/m"}}, "$.spec.model.name", "should be non-empty"),
        ({"maxRetries": -1}, "$.spec.maxRetries", "less than the minimum of 0"),
        ({"suspend": "yes"}, "$.spec.suspend", "is not of type 'boolean'"),
        ({"resources": {"gpu": 65}}, "$.spec.resources.gpu", "greater than the maximum"),
        ({"resources": {"memory": "lots"}}, "$.spec.resources.memory", "does not match"),
        ({"storage": {"endpoint": "minio:9000"}}, "$.spec.storage.endpoint", "does not match"),
        ({"storage": {"secretRef": {"name": "Bad_Name"}}}, "$.spec.storage.secretRef.name", ""),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "$.spec.metadata", "too many"),
        ({"metadata": {"k": "v" * 513}}, "$.spec.metadata.k", "is too long"),
        ({"paralelism": 2}, "$.spec", "'paralelism' was unexpected"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_spec_is_rejected(
    validator: jsonschema.Draft202012Validator, patch: dict[str, Any], field: str, reason: str
) -> None:
    obj = minimal_batchjob()
    obj["spec"].update(patch)
    errors = errors_of(validator, obj)
    assert errors, f"{patch} was accepted"
    assert any(e.startswith(f"{field}: ") and reason in e for e in errors), errors


@pytest.mark.parametrize("window", ["24h", "90m", "1h30m", "2d", "45s"])
def test_good_windows_pass(validator: jsonschema.Draft202012Validator, window: str) -> None:
    obj = minimal_batchjob()
    obj["spec"]["completionWindow"] = window
    assert errors_of(validator, obj) == []


def test_status_rejects_unknown_phase_and_fields(
    validator: jsonschema.Draft202012Validator,
) -> None:
    obj = minimal_batchjob()
    obj["status"] = {"phase": "Done", "kopf": {"progress": {}}}
    errors = errors_of(validator, obj)
    assert any(e.startswith("$.status.phase: 'Done' is not one of") for e in errors), errors
    assert any("'kopf' was unexpected" in e for e in errors), errors


def test_full_status_is_valid(validator: jsonschema.Draft202012Validator) -> None:
    obj = minimal_batchjob()
    obj["status"] = {
        "phase": "Running",
        "conditions": [
            {
                "type": "Running",
                "status": "True",
                "reason": "PodsRunning",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": 1,
            }
        ],
        "requestCounts": {"total": 10, "completed": 4, "failed": 1},
        "usage": {"promptTokens": 100, "completionTokens": 50},
        "progress": "5/10",
        "throughput": 12.5,
        "eta": "2026-01-01T00:10:00Z",
        "deadline": "2026-01-02T00:00:00Z",
        "shards": [{"index": 0, "state": "Running", "completed": 4}],
        "jobName": "demo-shards",
    }
    assert errors_of(validator, obj) == []


# --- CEL immutability rules ----------------------------------------------------------------


def cel_rules(schema: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    return {
        path: node["x-kubernetes-validations"]
        for path, node in walk(schema)
        if "x-kubernetes-validations" in node
    }


def test_immutable_fields_carry_a_transition_rule() -> None:
    rules = cel_rules(openapi_schema())
    transition = {path: r for path, r in rules.items() if any("oldSelf" in x["rule"] for x in r)}
    assert set(transition) == {f".spec.{field}" for field in IMMUTABLE}
    for path, [rule] in transition.items():
        assert rule["rule"] == "self == oldSelf"
        assert path.removeprefix(".") in rule["message"]
    spec = openapi_schema()["properties"]["spec"]["properties"]
    assert "x-kubernetes-validations" not in spec["suspend"]
    assert "x-kubernetes-validations" not in spec["cancel"]


def test_metadata_key_length_rule() -> None:
    [rule] = openapi_schema()["properties"]["spec"]["properties"]["metadata"][
        "x-kubernetes-validations"
    ]
    env = celpy.Environment()
    program = env.program(env.compile(rule["rule"]))
    assert program.evaluate({"self": celpy.json_to_cel({"k" * 64: "v", "a": "b"})})
    assert not program.evaluate({"self": celpy.json_to_cel({"k" * 65: "v"})})
    assert "spec.metadata" in rule["message"]


def spec_rule_failures(spec: dict[str, Any]) -> list[str]:
    """Messages of the spec-level CEL rules that refuse ``spec`` (as the API server answers a
    create; none of these rules is a transition rule)."""
    rules = openapi_schema()["properties"]["spec"]["x-kubernetes-validations"]
    env = celpy.Environment()
    failures = []
    for rule in rules:
        assert "oldSelf" not in rule["rule"]
        program = env.program(env.compile(rule["rule"]))
        if not program.evaluate({"self": celpy.json_to_cel(spec)}):
            failures.append(rule["message"])
    return failures


RAY_WORKERS = {"backend": "ray", "ray": {"workers": 2}}


@pytest.mark.parametrize(
    "patch",
    [
        {},
        {"parallelism": 2, "maxParallelism": 4},
        {"backend": "ray"},
        {"backend": "ray", "parallelism": 3, "maxParallelism": 6, "ray": {}},
        RAY_WORKERS,
        RAY_WORKERS | {"parallelism": 1},
    ],
)
def test_spec_rules_accept(patch: dict[str, Any]) -> None:
    assert spec_rule_failures(minimal_batchjob()["spec"] | patch) == []


@pytest.mark.parametrize(
    ("patch", "words"),
    [
        ({"parallelism": 3, "maxParallelism": 2}, ["spec.maxParallelism must be at least"]),
        ({"ray": {"workers": 2}}, ["spec.ray requires spec.backend: ray"]),
        (RAY_WORKERS | {"parallelism": 2}, ["set spec.parallelism to 1"]),
        # The API server fills parallelism's default (1) before the rules run.
        (RAY_WORKERS | {"parallelism": 1, "maxParallelism": 1}, ["remove spec.maxParallelism"]),
        (
            RAY_WORKERS | {"parallelism": 2, "maxParallelism": 4},
            ["set spec.parallelism to 1", "remove spec.maxParallelism"],
        ),
    ],
)
def test_spec_rules_refuse_with_what_to_fix(patch: dict[str, Any], words: list[str]) -> None:
    failures = spec_rule_failures(minimal_batchjob()["spec"] | patch)
    assert len(failures) == len(words)
    for failure, word in zip(failures, words, strict=True):
        assert word in failure


def evaluate_transition(rule: str, old: Any, new: Any) -> bool:
    env = celpy.Environment()
    program = env.program(env.compile(rule))
    result = program.evaluate({"self": celpy.json_to_cel(new), "oldSelf": celpy.json_to_cel(old)})
    return bool(result)


def updated_fields(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Names of spec fields whose transition rules reject the update old -> new (the API
    server evaluates a transition rule only when the field exists on both sides)."""
    rejected = []
    spec = openapi_schema()["properties"]["spec"]["properties"]
    for name, node in spec.items():
        for rule in node.get("x-kubernetes-validations", []):
            if (
                name in old
                and name in new
                and not evaluate_transition(rule["rule"], old[name], new[name])
            ):
                rejected.append(name)
    return rejected


def test_cel_rules_reject_changes_to_immutable_fields() -> None:
    old = minimal_batchjob()["spec"] | {"endpoint": "/v1/chat/completions", "parallelism": 2}
    changes: dict[str, Any] = {
        "model": {"name": "tiny-qwen", "source": "/models/other"},
        "input": "s3://llmbatch/other.jsonl",
        "output": "s3://llmbatch/other/",
        "endpoint": "/v1/embeddings",
        "parallelism": 3,
    }
    for field, value in changes.items():
        new = copy.deepcopy(old)
        new[field] = value
        assert updated_fields(old, new) == [field]


def test_cel_rules_allow_suspend_cancel_and_same_values() -> None:
    old = minimal_batchjob()["spec"] | {
        "model": {"name": "m", "source": "/m", "engineArgs": {"a": 1}}
    }
    new = copy.deepcopy(old) | {"suspend": True, "cancel": True, "maxRetries": 5}
    assert updated_fields(old, new) == []
    # Structural equality, not identity: an equal nested copy passes.
    assert updated_fields(old, copy.deepcopy(old)) == []


def test_yaml_round_trip() -> None:
    text = render_yaml()
    assert text.startswith("# Generated by `make crds`")
    assert yaml.safe_load(text) == build_crd()


def test_unions_collapse_to_the_wider_type() -> None:
    # Condition.type is ConditionType | str: conditions of other controllers must fit too.
    status = openapi_schema()["properties"]["status"]["properties"]
    assert status["conditions"]["items"]["properties"]["type"] == {"type": "string"}
    merged = to_structural(
        {"anyOf": [{"const": "a"}, {"enum": ["b", "c"]}, {"type": "null"}]}, {}, ".x"
    )
    assert merged == {"type": "string", "enum": ["a", "b", "c"]}


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"oneOf": [{"type": "string"}]}, "oneOf is not supported"),
        ({"anyOf": [{"type": "string"}, {"type": "integer"}]}, "has no structural form"),
        ({"$ref": "#/$defs/Missing"}, "unresolvable"),
        ({"type": "array"}, "array without an item schema"),
    ],
)
def test_unsupported_constructs_are_refused(schema: dict[str, Any], message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        to_structural(schema, {}, ".field")
