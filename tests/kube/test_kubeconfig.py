"""Reading kubeconfigs without the official client: tokens, token files, CAs, contexts."""

from __future__ import annotations

import base64
import json
import ssl
import sys
from pathlib import Path

import pytest
import yaml

from llmbatch.kube import KubeError, from_kubeconfig, load_connection
from tests.kube.kubeconfigs import self_signed_pem, write_kubeconfig


def test_token_and_plain_http(tmp_path: Path) -> None:
    connection = from_kubeconfig(
        write_kubeconfig(tmp_path / "kc", {"server": "http://127.0.0.1:1"}, {"token": "abc"})
    )
    assert connection.server == "http://127.0.0.1:1"
    assert connection.token() == "abc"


def test_token_file_relative_to_the_kubeconfig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tok").write_text("from-file\n")
    path = write_kubeconfig(
        tmp_path / "kc",
        {"server": "https://k:6443", "insecure-skip-tls-verify": True},
        {"tokenFile": "tok"},
    )
    monkeypatch.setenv("KUBECONFIG", str(path))
    connection = load_connection()
    assert connection.verify is False
    assert connection.token() == "from-file"


def test_inline_ca(tmp_path: Path) -> None:
    pem = self_signed_pem()
    connection = from_kubeconfig(
        write_kubeconfig(
            tmp_path / "kc",
            {
                "server": "https://k:6443",
                "certificate-authority-data": base64.b64encode(pem).decode(),
            },
            {},
        )
    )
    assert isinstance(connection.verify, ssl.SSLContext)
    assert connection.verify.get_ca_certs()[0]["subject"] == ((("commonName", "test-ca"),),)
    assert connection.token() is None


def test_missing_context_is_named(tmp_path: Path) -> None:
    path = tmp_path / "kc"
    path.write_text(yaml.safe_dump({"current-context": "nope", "contexts": []}))
    with pytest.raises(KubeError, match="nope") as raised:
        from_kubeconfig(str(path))
    # No server answered: the error reads as the configuration problem it is.
    assert raised.value.status == 0 and str(raised.value) == raised.value.message


def test_an_exec_plugin_runs_through_the_official_client(tmp_path: Path) -> None:
    """EKS, GKE and OIDC users get their token from a plugin; the namespace stays ours."""
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "kind": "ExecCredential",
        "status": {"token": "from-plugin"},
    }
    plugin = {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "command": sys.executable,
        "args": ["-c", f"print({json.dumps(json.dumps(credential))})"],
    }
    path = write_kubeconfig(
        tmp_path / "kc",
        {"server": "https://k:6443", "insecure-skip-tls-verify": True},
        {"exec": plugin},
        namespace="team-c",
    )
    connection = from_kubeconfig(path)
    assert connection.server == "https://k:6443"
    assert connection.verify is False
    assert connection.token() == "from-plugin"
    assert connection.namespace == "team-c"
