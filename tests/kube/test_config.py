"""Where the client finds its cluster: explicit path, $KUBECONFIG, ~/.kube/config, the
in-cluster service account (first, for the operator); the namespace of the current context."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmbatch.kube import KubeError, find_kubeconfig, from_kubeconfig, load_connection
from llmbatch.kube import config as kube_config
from tests.kube.kubeconfigs import self_signed_pem, write_kubeconfig


def test_explicit_path_wins_and_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = write_kubeconfig(tmp_path / "a")
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "b")))
    assert find_kubeconfig(explicit) == explicit
    with pytest.raises(KubeError, match="does not exist"):
        find_kubeconfig(tmp_path / "missing")


def test_first_existing_entry_of_kubeconfig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    second = write_kubeconfig(tmp_path / "second")
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'nope'}:{second}")
    assert find_kubeconfig() == second


def test_home_config_then_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert find_kubeconfig() is None
    (tmp_path / ".kube").mkdir()
    home = write_kubeconfig(tmp_path / ".kube" / "config")
    assert find_kubeconfig() == home


def test_context_namespace(tmp_path: Path) -> None:
    team = write_kubeconfig(tmp_path / "x", namespace="team-a")
    assert from_kubeconfig(team).namespace == "team-a"
    assert from_kubeconfig(write_kubeconfig(tmp_path / "y")).namespace == "default"


@pytest.fixture
def pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A service account mounted as in a pod, and no kubeconfig anywhere."""
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("sa-token\n")
    (account / "namespace").write_text("team-b")
    (account / "ca.crt").write_bytes(self_signed_pem())
    monkeypatch.setattr(kube_config, "SERVICE_ACCOUNT_DIR", account)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return account


def test_the_service_account_in_a_pod(pod: Path) -> None:
    connection = load_connection()
    assert connection.server == "https://[fd00::1]:6443"
    assert connection.token() == "sa-token"
    assert connection.namespace == "team-b"
    assert connection.verify is not False


def test_a_kubeconfig_wins_unless_the_service_account_comes_first(
    pod: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kc")))
    assert load_connection().server == "http://127.0.0.1:1"
    # The operator's choice, as kopf's own login makes it.
    assert load_connection(in_cluster_first=True).server == "https://[fd00::1]:6443"


def test_no_configuration_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kube_config, "SERVICE_ACCOUNT_DIR", tmp_path / "none")
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(KubeError, match="no kubeconfig found") as raised:
        load_connection()
    assert raised.value.status == 0
