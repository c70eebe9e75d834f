"""How the CLI finds its cluster: explicit path, $KUBECONFIG, ~/.kube/config; the namespace
of the current context."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llmbatch.cli.kube import KubeError, context_namespace, find_kubeconfig


def write_kubeconfig(path: Path, namespace: str | None) -> Path:
    context: dict[str, str] = {"cluster": "c", "user": "u"}
    if namespace:
        context["namespace"] = namespace
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "ctx",
                "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {}}],
                "contexts": [{"name": "ctx", "context": context}],
            }
        )
    )
    return path


def test_explicit_path_wins_and_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = write_kubeconfig(tmp_path / "a", None)
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "b", None)))
    assert find_kubeconfig(explicit) == explicit
    with pytest.raises(KubeError, match="does not exist"):
        find_kubeconfig(tmp_path / "missing")


def test_first_existing_entry_of_kubeconfig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    second = write_kubeconfig(tmp_path / "second", None)
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'nope'}:{second}")
    assert find_kubeconfig() == second


def test_home_config_then_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert find_kubeconfig() is None
    (tmp_path / ".kube").mkdir()
    home = write_kubeconfig(tmp_path / ".kube" / "config", None)
    assert find_kubeconfig() == home


def test_context_namespace(tmp_path: Path) -> None:
    assert context_namespace(write_kubeconfig(tmp_path / "x", "team-a")) == "team-a"
    assert context_namespace(write_kubeconfig(tmp_path / "y", None)) == "default"
