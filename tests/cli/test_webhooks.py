"""`llmbatch webhooks add|list|remove` against an in-memory API: the endpoint and its secret
land in the webhooks Secret, the secret is printed once (never listed), bad URLs and tenants are
refused."""

from __future__ import annotations

import base64
import json

import pytest
from typer.testing import CliRunner

from llmbatch.cli.main import app
from llmbatch.gateway.kube import KubeClient
from llmbatch.notify.signing import secret_key
from tests.gateway.memkube import MemKube

SECRET = "llmbatch-gateway-webhooks"


@pytest.fixture
def memkube(monkeypatch: pytest.MonkeyPatch) -> MemKube:
    kube = MemKube()

    def from_environment(
        cls: type[KubeClient], namespace: str, kubeconfig: str | None = None
    ) -> KubeClient:
        return kube.client(namespace)

    monkeypatch.setattr(KubeClient, "from_environment", classmethod(from_environment))
    return kube


def test_add_list_remove(memkube: MemKube) -> None:
    runner = CliRunner()
    url = "http://127.0.0.1:8080/hooks"
    added = runner.invoke(
        app, ["webhooks", "add", url, "--tenant", "acme", "--allow-private", "-n", "team-a"]
    )
    assert added.exit_code == 0, added.output
    signing_secret = added.stdout.strip().splitlines()[-1]
    assert signing_secret.startswith("whsec_")
    assert len(secret_key(signing_secret)) == 32

    stored = memkube.get("team-a", "secrets", SECRET)
    assert stored is not None
    ((endpoint_id, value),) = stored["data"].items()
    record = json.loads(base64.b64decode(value))
    assert (record["tenant"], record["url"], record["secret"]) == ("acme", url, signing_secret)

    listed = runner.invoke(app, ["webhooks", "list", "-n", "team-a"])
    assert listed.exit_code == 0
    assert endpoint_id in listed.stdout and url in listed.stdout
    assert signing_secret not in listed.stdout
    assert (
        endpoint_id
        not in runner.invoke(app, ["webhooks", "list", "--tenant", "other", "-n", "team-a"]).stdout
    )

    assert runner.invoke(app, ["webhooks", "remove", endpoint_id, "-n", "team-a"]).exit_code == 0
    assert memkube.get("team-a", "secrets", SECRET)["data"] == {}  # type: ignore[index]
    assert runner.invoke(app, ["webhooks", "remove", endpoint_id, "-n", "team-a"]).exit_code == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["http://127.0.0.1:8080/x", "--tenant", "acme"], "loopback"),
        (["http://169.254.169.254/latest", "--tenant", "acme"], "link-local"),
        (["ftp://example.com/x", "--tenant", "acme"], "http:// or https://"),
        (["https://example.com/x", "--tenant", "Not_A_Label"], "DNS label"),
    ],
)
def test_add_refuses(memkube: MemKube, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["webhooks", "add", *args])
    assert result.exit_code == 1
    assert message in result.output
    assert memkube.get("default", "secrets", SECRET) is None
