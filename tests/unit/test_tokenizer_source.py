"""A model's tokenizer found from its source without the weights: a local folder in place, an
s3:// prefix's tokenizer files alone (cached once), a locally cached hf:// model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from llmbatch.models.tokenizer_source import (
    TOKENIZER_FILES,
    TokenizerNotFound,
    tokenizer_directory,
)
from llmbatch.runner.plan.counting import prompt_counter
from llmbatch.storage import StorageSettings, get_store


def upload_model(model: Path, prefix: str, settings: StorageSettings) -> None:
    store = get_store(prefix, settings)
    for path in model.iterdir():
        if path.is_file():
            store.upload_file(path, prefix + path.name)


def test_local_folder_is_read_in_place(tiny_model: Path) -> None:
    assert tokenizer_directory(str(tiny_model)) == tiny_model
    assert tokenizer_directory(f"file://{tiny_model}") == tiny_model


@pytest.mark.parametrize("source", ["/nonexistent/model", "gs://bucket/model"])
def test_a_source_without_a_readable_tokenizer_says_why(source: str) -> None:
    with pytest.raises(TokenizerNotFound, match=re.escape(source)):
        tokenizer_directory(source)


def test_hf_source_not_in_the_local_cache_is_not_downloaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TokenizerNotFound, match="local Hugging Face cache"):
        tokenizer_directory("hf://nobody/no-such-model")


@pytest.mark.slow
def test_s3_source_downloads_the_tokenizer_files_only_once(
    tiny_model: Path, tmp_path: Path, s3_settings: StorageSettings, s3_bucket: str
) -> None:
    prefix = f"s3://{s3_bucket}/models/tiny/"
    upload_model(tiny_model, prefix, s3_settings)
    directory = tokenizer_directory(prefix, s3_settings, cache_dir=tmp_path)
    fetched = {p.name for p in directory.iterdir()}
    assert fetched <= set(TOKENIZER_FILES) | {"vocab.json", "merges.txt", "added_tokens.json"}
    assert "tokenizer.json" in fetched
    assert not any(name.endswith((".safetensors", ".bin")) for name in fetched)
    # Cached: a second lookup does not need S3 at all.
    offline = StorageSettings(endpoint_url="http://127.0.0.1:9", max_attempts=1)
    assert tokenizer_directory(prefix, offline, cache_dir=tmp_path) == directory


@pytest.mark.slow
def test_plan_counts_an_s3_model_with_its_tokenizer(
    tiny_model: Path,
    tmp_path: Path,
    s3_settings: StorageSettings,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLMBATCH_MODEL_CACHE", str(tmp_path))
    prefix = f"s3://{s3_bucket}/models/tiny/"
    upload_model(tiny_model, prefix, s3_settings)
    s3_counter, how = prompt_counter(prefix, None, s3_settings)
    local_counter, _ = prompt_counter(str(tiny_model), None)
    body = {"messages": [{"role": "user", "content": "What is the capital of France?"}]}
    assert how == "tokenizer"
    assert s3_counter.count(body) == local_counter.count(body)
    assert prompt_counter(f"s3://{s3_bucket}/missing/", None, s3_settings)[1] == "estimate"


@pytest.mark.slow
def test_gateway_counts_an_s3_model_with_the_gateways_storage_settings(
    tiny_model: Path,
    tmp_path: Path,
    s3_settings: StorageSettings,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from llmbatch.gateway import tokens
    from llmbatch.gateway.config import ModelEntry

    monkeypatch.setenv("LLMBATCH_MODEL_CACHE", str(tmp_path))
    monkeypatch.setattr(tokens, "_cache", {})
    prefix = f"s3://{s3_bucket}/models/tiny/"
    upload_model(tiny_model, prefix, s3_settings)
    counter = tokens.counter_for("tiny", ModelEntry(source=prefix), get_store(prefix, s3_settings))
    assert counter.exact
