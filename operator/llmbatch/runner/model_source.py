"""Where the weights come from: a local path, ``s3://bucket/prefix`` or ``hf://org/name``.

S3 models are downloaded once per node into a cache dir, under a file lock, so pods of the
same batch that start together download once and the others wait for the whole copy.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import shutil
import tempfile
from pathlib import Path

from llmbatch.models.tokenizer_source import default_model_cache
from llmbatch.runner.errors import PermanentError
from llmbatch.storage import (
    AccessDenied,
    BucketNotFound,
    ObjectNotFound,
    StorageSettings,
    get_store,
)

log = logging.getLogger(__name__)

_DONE = ".llmbatch-complete"


def resolve_model(
    source: str, settings: StorageSettings | None = None, cache_dir: Path | None = None
) -> Path:
    """A local directory holding the model; raises PermanentError if there is none."""
    if source.startswith("hf://"):
        return _from_hub(source[len("hf://") :])
    if source.startswith("s3://"):
        return _from_s3(source, settings, cache_dir or default_model_cache())
    path = Path(source[len("file://") :] if source.startswith("file://") else source)
    if not (path / "config.json").is_file():
        raise PermanentError(f"model source {source}: no config.json in {path}")
    return path


def _from_hub(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - vLLM depends on it
        raise PermanentError("hf:// model sources need huggingface_hub") from exc
    try:
        # A node with a warm HF cache (or a mounted one) starts without the network.
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:
        log.info("model hf://%s is not in the local Hugging Face cache; downloading", repo_id)
    try:
        return Path(snapshot_download(repo_id))
    except Exception as exc:
        raise PermanentError(
            f"model source hf://{repo_id} cannot be loaded: not in the local Hugging Face "
            f"cache and the hub did not answer ({type(exc).__name__}: {exc})"
        ) from exc


def _from_s3(source: str, settings: StorageSettings | None, cache_dir: Path) -> Path:
    prefix = source.rstrip("/") + "/"
    target = cache_dir / hashlib.sha256(prefix.encode()).hexdigest()[:24]
    if (target / _DONE).exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / _DONE).exists():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=cache_dir))
        try:
            log.info("downloading model %s to %s", source, target)
            get_store(prefix, settings).download_prefix(prefix, tmp)
            if not (tmp / "config.json").is_file():
                raise PermanentError(f"model source {source}: no config.json under it")
            (tmp / _DONE).write_text(source)
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
        except (ObjectNotFound, BucketNotFound, AccessDenied) as exc:
            raise PermanentError(f"model source {source} cannot be downloaded: {exc}") from exc
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target
