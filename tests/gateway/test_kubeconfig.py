"""Reading kubeconfigs without the official client: tokens, token files, CAs, contexts."""

from __future__ import annotations

import base64
import datetime
import ssl
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmbatch.gateway.kubeconfig import connect, from_kubeconfig


def write(path: Path, cluster: dict[str, Any], user: dict[str, Any]) -> str:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "ctx",
                "clusters": [{"name": "c", "cluster": cluster}],
                "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
                "users": [{"name": "u", "user": user}],
            }
        )
    )
    return str(path)


def self_signed_pem() -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def test_token_and_plain_http(tmp_path: Path) -> None:
    connection = from_kubeconfig(
        write(tmp_path / "kc", {"server": "http://127.0.0.1:1"}, {"token": "abc"})
    )
    assert connection.server == "http://127.0.0.1:1"
    assert connection.token() == "abc"


def test_token_file_relative_to_the_kubeconfig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tok").write_text("from-file\n")
    path = write(
        tmp_path / "kc",
        {"server": "https://k:6443", "insecure-skip-tls-verify": True},
        {"tokenFile": "tok"},
    )
    monkeypatch.setenv("KUBECONFIG", path)
    connection = connect()
    assert connection.verify is False
    assert connection.token() == "from-file"


def test_inline_ca(tmp_path: Path) -> None:
    pem = self_signed_pem()
    connection = from_kubeconfig(
        write(
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
    with pytest.raises(ValueError, match="nope"):
        from_kubeconfig(str(path))
