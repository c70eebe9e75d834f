"""Faults between the store and S3 (through the fault proxy): retried, nothing lost or changed."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from llmbatch.storage.s3 import S3Store
from llmbatch.storage.settings import MIN_PART_SIZE
from llmbatch_sandbox.s3faults import KINDS, FaultConfig, FaultRates, ProxyThread, running_proxy
from tests.fixtures.s3 import FaultyS3, S3Server

FAST: dict[str, object] = {
    "backoff_base": 0.01,
    "backoff_cap": 0.2,
    "part_size": MIN_PART_SIZE,
    "read_chunk_size": 128 * 1024,
}


def _through(proxy: ProxyThread, server: S3Server, **overrides: object) -> S3Store:
    """A store whose endpoint is the proxy (fast backoff: faults here are dense)."""
    via = S3Server(proxy.url, server.access_key_id, server.secret_access_key, server.region)
    options = {**FAST, **overrides}
    return S3Store(via.settings(**options))


def test_round_trip_through_faults_loses_and_corrupts_nothing(
    s3_faulty: FaultyS3, s3_bucket: str, tmp_path: Path
) -> None:
    # 15% of all requests fail, every kind of fault on every verb, on a fixed seed.
    store = S3Store(s3_faulty.server.settings(**FAST))
    counts = s3_faulty.proxy.counts
    uri = f"s3://{s3_bucket}/out/output.jsonl"
    written = hashlib.sha256()
    count = 0
    with store.open_write(uri) as handle:
        for i in range(120_000):
            line = b'{"custom_id": "req-%06d", "body": "%s"}\n' % (i, b"t" * (i % 113))
            handle.write(line)
            written.update(line)
            count += 1
    info = store.head(uri)
    assert info is not None and info.size > 2 * MIN_PART_SIZE
    read = hashlib.sha256()
    seen = 0
    for line in store.read_lines(uri):
        read.update(line + b"\n")
        seen += 1
    assert seen == count
    assert read.hexdigest() == written.hexdigest()
    for i in range(40):
        small = f"s3://{s3_bucket}/progress/shard-{i}.json"
        store.write_bytes(small, b'{"shard": %d}' % i)
        assert store.read_bytes(small) == b'{"shard": %d}' % i
    assert len(list(store.list(f"s3://{s3_bucket}/progress/"))) == 40
    # The transfer manager's paths (model weights, committed parts) go through the same faults.
    weights = tmp_path / "weights.bin"
    weights.write_bytes(os.urandom(2 * MIN_PART_SIZE + 4321))
    remote = f"s3://{s3_bucket}/models/tiny/weights.bin"
    store.upload_file(weights, remote)
    store.download_file(remote, tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == weights.read_bytes()
    # The test must be able to fail: faults of several kinds were really injected.
    assert s3_faulty.injected >= 10
    assert sum(1 for kind in KINDS if counts[kind]) >= 4


def test_body_cut_mid_stream_resumes_exactly(s3_server: S3Server, s3_bucket: str) -> None:
    config = FaultConfig(rates={"GET": FaultRates(reset_mid_body=0.9)}, seed=1)
    with running_proxy(s3_server.endpoint_url, config) as proxy:
        store = _through(proxy, s3_server, read_chunk_size=16 * 1024)
        uri = f"s3://{s3_bucket}/in.jsonl"
        lines = [b"%d:%s" % (i, b"q" * (i % 50)) for i in range(60_000)]
        store.write_bytes(uri, b"\n".join(lines))
        for _ in range(4):
            assert list(store.read_lines(uri)) == lines
        assert proxy.counts["GET reset_mid_body"] >= 4


def test_lost_answers_to_conditional_put_and_complete(s3_server: S3Server, s3_bucket: str) -> None:
    # Every other PUT/POST is carried out but its answer is lost: the retry must recognise
    # its own earlier success instead of failing or writing twice.
    lost = FaultRates(reset_after=1.0)
    config = FaultConfig(rates={"PUT": lost, "POST": lost}, max_consecutive=1)
    with running_proxy(s3_server.endpoint_url, config) as proxy:
        store = _through(proxy, s3_server)
        manifest = f"s3://{s3_bucket}/out/manifest.json"
        assert store.write_bytes_if_absent(manifest, b'{"ok": true}')
        assert not store.write_bytes_if_absent(manifest, b'{"ok": false}')
        assert store.read_bytes(manifest) == b'{"ok": true}'
        data = bytes(range(256)) * (2 * MIN_PART_SIZE // 256 + 99)
        uri = f"s3://{s3_bucket}/out/big.bin"
        with store.open_write(uri) as handle:
            handle.write(data)
        assert hashlib.sha256(store.read_bytes(uri)).digest() == hashlib.sha256(data).digest()
        assert proxy.counts["PUT reset_after"] >= 2
        assert proxy.counts["POST reset_after"] >= 2


def test_stalled_answer_times_out_and_is_retried(s3_server: S3Server, s3_bucket: str) -> None:
    config = FaultConfig(
        rates={"GET": FaultRates(slow=1.0)}, slow_delay=(1.5, 1.5), max_consecutive=1
    )
    with running_proxy(s3_server.endpoint_url, config) as proxy:
        store = _through(proxy, s3_server, read_timeout=0.4)
        uri = f"s3://{s3_bucket}/stall.txt"
        store.write_bytes(uri, b"patience")
        assert store.read_bytes(uri) == b"patience"
        assert proxy.counts["GET slow"] == 1


def test_faults_stop_when_attempts_run_out(s3_server: S3Server, s3_bucket: str) -> None:
    # A dead endpoint (every request fails, no pause) surfaces as a StorageError naming the
    # URI after the configured attempts, instead of hanging.
    from llmbatch.storage import StorageError

    config = FaultConfig(rates={"*": FaultRates(slow_down=1.0)}, max_consecutive=10_000)
    with running_proxy(s3_server.endpoint_url, config) as proxy:
        store = _through(proxy, s3_server, max_attempts=2, request_attempts=2)
        uri = f"s3://{s3_bucket}/never.txt"
        with pytest.raises(StorageError, match=uri):
            store.write_bytes(uri, b"x")
        assert proxy.counts["PUT slow_down"] == 4
