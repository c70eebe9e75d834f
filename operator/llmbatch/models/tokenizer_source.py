"""A model's tokenizer, found from the model source a BatchJob or the gateway config names, so
token counts use the model's own tokenizer and chat template without the user passing it again.

- a local directory (``/path`` or ``file:///path``): read in place;
- ``s3://bucket/prefix``: only the tokenizer files (never the weights) are downloaded, once,
  into ``<model cache>/tokenizers/<hash of the prefix>``;
- ``hf://org/name``: the local Hugging Face cache only (no network), tokenizer files only.

A fixture name (``smollm2-135m-instruct``) is not resolved: where ``llmbatch models fetch``
builds it is not a documented contract, so the user passes the folder it prints.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from llmbatch.api.tokens import tokenizer_dir
from llmbatch.storage import StorageError, StorageSettings, get_store, join_uri

log = logging.getLogger(__name__)

# What a tokenizer and its chat template need; weights are never among them.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "config.json",
    "generation_config.json",
)
# Older tokenizers ship their vocabulary as these instead of tokenizer.json.
_OPTIONAL_FILES = ("vocab.json", "merges.txt", "tokenizer.model", "added_tokens.json")


class TokenizerNotFound(Exception):
    """The model source names no tokenizer this machine can read; the message says why."""


def default_model_cache() -> Path:
    """The runner's model cache (LLMBATCH_MODEL_CACHE, else $LLMBATCH_CACHE/model-cache)."""
    env = os.environ.get("LLMBATCH_MODEL_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("LLMBATCH_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "llmbatch") / "model-cache"


def tokenizer_directory(
    source: str, settings: StorageSettings | None = None, cache_dir: Path | None = None
) -> Path:
    """A local directory holding the tokenizer of ``source``; raises TokenizerNotFound."""
    if source.startswith("s3://"):
        return _from_s3(source, settings, (cache_dir or default_model_cache()) / "tokenizers")
    if source.startswith("hf://"):
        return _from_hub_cache(source.removeprefix("hf://"))
    if "://" in source and not source.startswith("file://"):
        raise TokenizerNotFound(f"{source}: not a local path, s3:// or hf:// source")
    directory = tokenizer_dir(source)
    if directory is None:
        raise TokenizerNotFound(f"{source}: no tokenizer.json or tokenizer_config.json there")
    return directory


def _from_s3(source: str, settings: StorageSettings | None, cache_dir: Path) -> Path:
    prefix = source.rstrip("/") + "/"
    target = cache_dir / hashlib.sha256(prefix.encode()).hexdigest()[:24]
    if tokenizer_dir(str(target)) is not None:
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=cache_dir))
    try:
        store = get_store(prefix, settings)
        for name in TOKENIZER_FILES + _OPTIONAL_FILES:
            uri = join_uri(prefix, name)
            if store.exists(uri):
                store.download_file(uri, tmp / name)
        if tokenizer_dir(str(tmp)) is None:
            raise TokenizerNotFound(f"{source}: no tokenizer.json or tokenizer_config.json")
        log.info("tokenizer files of %s cached in %s", source, target)
        # A rename is atomic: a concurrent reader sees the whole folder or none. If another
        # process cached it first, its copy is as good.
        with contextlib.suppress(OSError):
            tmp.rename(target)
    except StorageError as exc:
        raise TokenizerNotFound(f"{source}: cannot read its tokenizer files: {exc}") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _from_hub_cache(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(
            repo_id, local_files_only=True, allow_patterns=list(TOKENIZER_FILES)
        )
    except Exception as exc:  # ImportError, or not in the local cache
        raise TokenizerNotFound(
            f"hf://{repo_id}: not in the local Hugging Face cache ({type(exc).__name__})"
        ) from exc
    directory = tokenizer_dir(path)
    if directory is None:
        raise TokenizerNotFound(f"hf://{repo_id}: the cached snapshot has no tokenizer")
    return directory
