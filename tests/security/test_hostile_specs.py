"""Hostile BatchJob specs: injection in names, model sources, URIs, engine args and templates.

What protects what:
- The CRD schema (generated from ``llmbatch.api.batchjob``) rejects at apply time every value
  that could read as a flag or a shell fragment where the runner expects a name or a URI:
  model names and sources, URIs, Kubernetes names, quantities.
- Values the schema must let through (an absolute path may hold any character) are checked by
  the operator (``controller.validation.check_spec``: no ``..`` in a model path) and passed to
  the runner as single argv items of an exec-form container command: never through a shell,
  never split, never read as another flag. ``engineArgs`` travel as one JSON argv item and
  reach vLLM as keyword arguments, never as command-line flags; the runner drops ``model``
  and ``served_model_name`` from them so they cannot replace the spec's model.
- Trust boundary: whoever may create a BatchJob may also set ``spec.runnerImage`` and so run
  any code in the shard pods of their namespace; engine args such as ``trust_remote_code``
  grant nothing beyond that, so they are passed through (documented here, not neutralised).
  Tenants of the gateway cannot set engine args, model sources or images at all.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmbatch.api.batchjob import K8S_NAME_PATTERN, MODEL_NAME_PATTERN
from llmbatch.api.crd import openapi_schema
from llmbatch.api.schema import to_jsonschema
from llmbatch.controller.build_jobs import build_finalize_job, build_runner_job
from llmbatch.controller.config import OperatorConfig
from llmbatch.controller.names import finalize_job_name, label_value, run_job_name
from llmbatch.controller.validation import check_spec
from llmbatch.runner.cli import build_parser, parse_engine_args
from llmbatch_sandbox.kubelet.envresolve import expand
from tests.chaos.profiles import FUZZ
from tests.controller.factories import CREATED, batchjob

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "llmbatch"
CONFIG = OperatorConfig(runner_image="runner:test", default_s3_endpoint="http://s3.local:9000")
SECRET_VALUES = {"AWS_ACCESS_KEY_ID": "AKIA-TEST-ID", "AWS_SECRET_ACCESS_KEY": "s3cr3t-v4lue"}


@pytest.fixture(scope="module")
def schema() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(to_jsonschema(openapi_schema()))


def with_spec(**changes: Any) -> dict[str, Any]:
    body = batchjob()
    for path, value in changes.items():
        node = body["spec"]
        *parents, last = path.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return body


HOSTILE_REJECTED_BY_SCHEMA: list[tuple[str, Any]] = [
    ("model__source", "--trust-remote-code"),
    ("model__source", "; rm -rf /"),
    ("model__source", "hf://x/y --trust-remote-code"),
    ("model__source", "hf://x/y;id"),
    ("model__source", "$(id)"),
    ("model__source", "../../etc"),
    ("model__source", "relative/path"),
    ("model__source", ""),
    ("model__name", "--model"),
    ("model__name", "-x"),
    ("model__name", "tiny qwen"),
    ("model__name", "x;rm -rf /"),
    ("model__name", "$(id)"),
    ("model__name", "`id`"),
    ("input", "--engine-args={}"),
    ("input", "../../etc/passwd"),
    ("input", "ftp://x/y"),
    ("input", "s3://UPPER/x"),
    ("input", " s3://bucket/x"),
    ("output", "-o"),
    ("output", "http://evil/"),
    ("storage__endpoint", "file:///etc/passwd"),
    ("storage__endpoint", "--endpoint-url"),
    ("storage__secretRef", {"name": "../other"}),
    ("storage__secretRef", {"name": "Upper"}),
    ("storage__secretRef", {"name": "a;b"}),
    ("priorityClassName", "x --privileged"),
    ("queueName", "q; rm"),
    ("resources__cpu", "1; rm -rf /"),
    ("resources__memory", "1Gi --privileged"),
    ("resources__gpu", -1),
    ("parallelism", 0),
    ("parallelism", 10**6),
    ("maxRetries", -1),
    ("completionWindow", "24h; rm"),
    ("endpoint", "/v1/chat/completions --x"),
    ("engineArgs", ["--model", "/etc"]),
    ("metadata", {"k" * 65: "v"}),
]


@pytest.mark.parametrize(("field", "value"), HOSTILE_REJECTED_BY_SCHEMA)
def test_schema_rejects_injection(
    schema: jsonschema.Draft202012Validator, field: str, value: Any
) -> None:
    if field == "engineArgs":
        field = "model__engineArgs"
    errors = list(schema.iter_errors(with_spec(**{field: value})))
    # The CEL rule on metadata keys is the API server's job: the pydantic model checks it too.
    if field == "metadata":
        spec, problems = check_spec(with_spec(**{field: value})["spec"])
        assert spec is None and problems
        return
    assert errors, f"spec.{field.replace('__', '.')}={value!r} passed the schema"


@pytest.mark.parametrize(
    "source",
    ["/../../etc", "/models/../../etc", "/models/x/..", "hf://x/..", "/x\x00y"],
)
def test_operator_refuses_model_paths_that_climb(source: str) -> None:
    spec, problems = check_spec(with_spec(model__source=source)["spec"])
    assert spec is None or problems, f"{source!r} accepted"


# --- the Job command: exec form, one argv item per value, parsed back unchanged -----------------


def runner_argv(body: dict[str, Any]) -> list[str]:
    job = build_runner_job(body, CONFIG, CREATED)
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert "args" not in container or all(isinstance(a, str) for a in container["args"])
    command: list[str] = container["command"]
    assert all(isinstance(part, str) for part in command)
    return command + list(container.get("args") or [])


def _resolved_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as a kubelet builds it: secretKeyRefs resolved, $(VAR)
    references expanded (Kubernetes semantics, as implemented by the sandbox's kubelet)."""
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        if "valueFrom" in item:
            env[item["name"]] = SECRET_VALUES[item["valueFrom"]["secretKeyRef"]["key"]]
        else:
            env[item["name"]] = expand(str(item.get("value", "")), env)
    return env


def kubelet_view(body: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """What the runner process really receives: argv and env after the kubelet's expansion."""
    job = build_runner_job(body, CONFIG, CREATED)
    [container] = job["spec"]["template"]["spec"]["containers"]
    env = _resolved_env(container)
    argv = [expand(part, env) for part in container["command"] + list(container.get("args") or [])]
    return argv, env


def test_command_is_exec_form_without_a_shell() -> None:
    for job in (
        build_runner_job(batchjob(), CONFIG, CREATED),
        build_finalize_job(batchjob(), CONFIG, "none"),
    ):
        [container] = job["spec"]["template"]["spec"]["containers"]
        argv = container["command"]
        assert argv[0] == "llmbatch-runner"
        assert not {"sh", "bash", "/bin/sh", "/bin/bash", "-c"} & set(argv)


# Values the schema accepts, as hostile as it allows.
ABS_PATHS = st.from_regex(r"\A/[^\x00]{0,60}\Z").filter(lambda p: "/../" not in f"{p}/")
S3_URIS = st.builds(
    lambda bucket, key: f"s3://{bucket}/{key}",
    st.from_regex(r"\A[a-z0-9][a-z0-9.\-]{1,10}[a-z0-9]\Z"),
    st.text(max_size=40).filter(lambda k: "\x00" not in k),
)
URIS = st.one_of(ABS_PATHS, S3_URIS, st.builds(lambda p: "file://" + p, ABS_PATHS))
MODEL_NAMES = st.from_regex(MODEL_NAME_PATTERN.replace("^", r"\A").replace("$", r"\Z")).filter(
    lambda n: len(n) <= 256
)
ENGINE_ARGS = st.dictionaries(
    st.sampled_from(
        ["--model", "model", "served_model_name", "trust_remote_code", "-tp", "x --y", "$(id)"]
    )
    | st.text(max_size=12),
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    max_size=5,
)


@FUZZ
@given(
    source=ABS_PATHS | st.just("/models/$(AWS_SECRET_ACCESS_KEY)"),
    name=MODEL_NAMES,
    input_uri=URIS | st.just("s3://bucket/$$(x)/$(HOME)"),
    output_uri=URIS,
    engine_args=ENGINE_ARGS,
)
def test_runner_parses_back_exactly_the_spec(
    source: str, name: str, input_uri: str, output_uri: str, engine_args: dict[str, Any]
) -> None:
    body = with_spec(model__source=source, model__name=name, input=input_uri, output=output_uri)
    body["spec"]["model"]["engineArgs"] = engine_args
    spec, problems = check_spec(body["spec"])
    if spec is None or problems:
        return  # refused by the operator: nothing is built
    argv, _ = kubelet_view(body)
    assert argv[:2] == ["llmbatch-runner", "run"]
    args = build_parser().parse_args(argv[1:])
    assert args.model == source
    assert args.served_model_name == name
    assert args.input == input_uri
    assert args.output == output_uri
    assert parse_engine_args(args.engine_args) == engine_args


def test_dollar_references_are_not_expanded_by_the_kubelet() -> None:
    """Kubernetes expands $(VAR) in container commands and env values; user strings must
    arrive literally (the builders double every $), never with a secret substituted."""
    body = with_spec(
        input="s3://llmbatch/in/$(AWS_SECRET_ACCESS_KEY).jsonl",
        output="s3://llmbatch/out/$$(x)/",
    )
    body["spec"]["model"]["chatTemplate"] = "{{ messages }} $(AWS_SECRET_ACCESS_KEY)"
    body["spec"]["model"]["engineArgs"] = {"note": "$(AWS_ACCESS_KEY_ID)"}
    argv, env = kubelet_view(body)
    args = build_parser().parse_args(argv[1:])
    assert args.input == "s3://llmbatch/in/$(AWS_SECRET_ACCESS_KEY).jsonl"
    assert args.output == "s3://llmbatch/out/$$(x)/"
    assert parse_engine_args(args.engine_args) == {"note": "$(AWS_ACCESS_KEY_ID)"}
    assert env["LLMBATCH_CHAT_TEMPLATE"] == "{{ messages }} $(AWS_SECRET_ACCESS_KEY)"
    for value in SECRET_VALUES.values():
        assert value not in " ".join(argv)


def test_engine_args_cannot_replace_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """``model`` and ``served_model_name`` in engineArgs are dropped; other keys reach vLLM as
    keyword arguments (never as CLI flags)."""
    import vllm

    from llmbatch.api.lines import Endpoint
    from llmbatch.runner import engine

    seen: dict[str, Any] = {}

    class FakeLLM:
        def __init__(self, **kwargs: Any) -> None:
            seen.update(kwargs)

    monkeypatch.setattr(vllm, "LLM", FakeLLM)
    monkeypatch.setattr(engine, "GenerationEngine", lambda llm, *a, **k: llm)
    engine.load_engine(
        "/models/real",
        "served",
        Endpoint.CHAT_COMPLETIONS,
        {"model": "/etc", "served_model_name": "evil", "max_model_len": 64},
    )
    assert seen["model"] == "/models/real"
    assert seen["served_model_name"] == "served"
    assert seen["max_model_len"] == 64


# --- names and labels ------------------------------------------------------------------------

DNS_SUBDOMAINS = st.from_regex(r"\A[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\Z").filter(
    lambda n: ".." not in n and ".-" not in n and "-." not in n
)
DNS_LABEL = K8S_NAME_PATTERN


@FUZZ
@given(owner=DNS_SUBDOMAINS, other=DNS_SUBDOMAINS)
def test_child_names_are_dns_labels_and_distinct(owner: str, other: str) -> None:
    import re

    for make in (run_job_name, finalize_job_name):
        name = make(owner)
        assert len(name) <= 63 and re.fullmatch(DNS_LABEL, name), name
        if owner != other:
            assert make(owner) != make(other)
    assert run_job_name(owner) != finalize_job_name(owner)
    value = label_value(owner)
    assert len(value) <= 63 and re.fullmatch(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?", value)


# --- no shell anywhere in the package ---------------------------------------------------------

SHELL_CALLS: dict[str, Callable[[ast.Call], bool]] = {
    "os.system": lambda call: True,
    "os.popen": lambda call: True,
    "os.spawnl": lambda call: True,
    "os.spawnlp": lambda call: True,
    "asyncio.create_subprocess_shell": lambda call: True,
    "pty.spawn": lambda call: True,
    "commands.getoutput": lambda call: True,
    "eval": lambda call: True,
    "exec": lambda call: True,
}


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def shell_uses(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        short = name.rsplit(".", 1)[-1]
        if name in SHELL_CALLS or short in ("create_subprocess_shell", "system", "popen"):
            found.append((node.lineno, name))
        for keyword in node.keywords:
            if keyword.arg == "shell" and not (
                isinstance(keyword.value, ast.Constant) and keyword.value.value is False
            ):
                found.append((node.lineno, f"{name}(shell=...)"))
    return found


def test_the_scanner_finds_shell_calls() -> None:
    sample = ast.parse(
        "import os, subprocess, asyncio\n"
        "subprocess.run('x', shell=True)\n"
        "subprocess.Popen(cmd, shell=flag)\n"
        "os.system('x')\n"
        "os.popen('x')\n"
        "asyncio.create_subprocess_shell('x')\n"
        "eval('1')\n"
        "subprocess.run(['x'], shell=False)\n"
    )
    assert [line for line, _ in shell_uses(sample)] == [2, 3, 4, 5, 6, 7]


def test_package_never_uses_a_shell() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 50
    offenders = []
    for path in files:
        for line, name in shell_uses(ast.parse(path.read_text(), str(path))):
            offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {name}")
    assert offenders == []
