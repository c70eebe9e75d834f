"""The platform defaults the runner sets before vLLM starts (both backends read them)."""

from __future__ import annotations

import os

import pytest

from llmbatch.api.lines import Endpoint
from llmbatch.runner.engine import ONEDNN_KERNEL_CACHE, engine_defaults


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


pytestmark = pytest.mark.skipif(
    not _on_cpu(), reason="the oneDNN and KV cache defaults are set on the CPU platform only"
)


def test_cpu_caps_onednn_kernel_cache_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    defaults = engine_defaults(Endpoint.CHAT_COMPLETIONS)
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == ONEDNN_KERNEL_CACHE == "128"
    assert defaults == {"enforce_eager": True, "dtype": "float32"}


def test_cpu_keeps_the_pods_own_kernel_cache_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "2048")
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "3")
    engine_defaults(Endpoint.EMBEDDINGS)
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "2048"
    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == "3"


def test_embeddings_run_the_pooling_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    assert engine_defaults(Endpoint.EMBEDDINGS)["runner"] == "pooling"
