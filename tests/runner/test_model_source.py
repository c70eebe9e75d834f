"""Model sources: local paths, s3:// prefixes (downloaded once into a cache), hf://."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from llmbatch.runner.errors import PermanentError
from llmbatch.runner.model_source import resolve_model
from llmbatch.storage import StorageSettings, get_store


def _upload_model(model: Path, prefix: str, settings: StorageSettings) -> None:
    store = get_store(prefix, settings)
    for path in sorted(model.iterdir()):
        if path.is_file():
            store.upload_file(path, f"{prefix}/{path.name}")


def test_s3_model_downloads_once_into_the_cache(
    tmp_path: Path, tiny_model: Path, s3_settings: StorageSettings, s3_bucket: str
) -> None:
    prefix = f"s3://{s3_bucket}/models/tiny"
    _upload_model(tiny_model, prefix, s3_settings)
    cache = tmp_path / "cache"
    found: list[Path] = []
    # Two pods of one node starting together: one downloads, the other waits for it.
    threads = [
        threading.Thread(target=lambda: found.append(resolve_model(prefix, s3_settings, cache)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(found) == 2 and found[0] == found[1]
    local = found[0]
    assert (local / "config.json").read_bytes() == (tiny_model / "config.json").read_bytes()
    assert (local / "model.safetensors").stat().st_size == (
        tiny_model / "model.safetensors"
    ).stat().st_size
    assert [p.name for p in cache.iterdir() if not p.name.startswith(".")] == [local.name]
    # Later pods use the cache without touching S3.
    get_store(prefix, s3_settings).delete(f"{prefix}/config.json")
    assert resolve_model(prefix, s3_settings, cache) == local


def test_missing_sources_are_permanent(
    tmp_path: Path, s3_settings: StorageSettings, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(PermanentError, match="cannot be downloaded"):
        resolve_model(f"s3://{s3_bucket}/models/none", s3_settings, tmp_path)
    with pytest.raises(PermanentError, match=r"no config\.json"):
        resolve_model(str(tmp_path), None, tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PermanentError, match="hf://llmbatch-test/absent cannot be loaded"):
        resolve_model("hf://llmbatch-test/absent")


def test_local_path_and_file_uri(tiny_model: Path) -> None:
    assert resolve_model(str(tiny_model)) == tiny_model
    assert resolve_model(f"file://{tiny_model}") == tiny_model
