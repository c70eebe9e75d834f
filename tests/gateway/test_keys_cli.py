"""`llmbatch keys create|list|revoke` against an in-memory API (the sandbox run is in
test_sandbox.py)."""

from __future__ import annotations

import base64
import json

import pytest
from typer.testing import CliRunner

from llmbatch.cli.main import app
from llmbatch.gateway import keys as keys_module
from llmbatch.gateway.kube import KubeClient
from tests.gateway.memkube import MemKube


@pytest.fixture
def memkube(monkeypatch: pytest.MonkeyPatch) -> MemKube:
    kube = MemKube()

    def from_environment(
        cls: type[KubeClient], namespace: str, kubeconfig: str | None = None
    ) -> KubeClient:
        return kube.client(namespace)

    monkeypatch.setattr(KubeClient, "from_environment", classmethod(from_environment))
    return kube


def test_create_list_revoke(memkube: MemKube) -> None:
    runner = CliRunner()
    created = runner.invoke(
        app, ["keys", "create", "--tenant", "acme", "--tier", "basic", "--namespace", "team-a"]
    )
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[-1]
    key_id = keys_module.parse_key_id(key)
    assert key_id is not None

    secret = memkube.get("team-a", "secrets", "llmbatch-gateway-keys")
    assert secret is not None
    stored = json.loads(base64.b64decode(secret["data"][key_id]))
    # Only the digest is stored, never the key.
    assert stored["sha256"] == keys_module.digest(key)
    assert key not in json.dumps(secret)
    assert (stored["tenant"], stored["tier"]) == ("acme", "basic")

    listed = runner.invoke(app, ["keys", "list", "-n", "team-a"])
    assert listed.exit_code == 0
    assert key_id in listed.stdout and "acme" in listed.stdout and key not in listed.stdout

    assert runner.invoke(app, ["keys", "revoke", key_id, "-n", "team-a"]).exit_code == 0
    assert key_id not in memkube.get("team-a", "secrets", "llmbatch-gateway-keys")["data"]
    again = runner.invoke(app, ["keys", "revoke", key_id, "-n", "team-a"])
    assert again.exit_code == 1


def test_create_rejects_bad_tenant(memkube: MemKube) -> None:
    result = CliRunner().invoke(
        app, ["keys", "create", "--tenant", "Not_A_Label", "--tier", "free"]
    )
    assert result.exit_code == 1
    assert "tenant" in result.output
