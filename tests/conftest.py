"""Test configuration shared by every tier.

Shared fixtures live in tests/fixtures/ (one module per thing they provide):
models.py (the tiny vLLM test model), s3.py (a moto S3 server), sandbox.py (the whole sandbox).
"""

import os

# vLLM on the CPU: a small KV cache, both cores, and the engine in-process (3 s start, not 22 s).
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

pytest_plugins = ["tests.fixtures.models", "tests.fixtures.s3", "tests.fixtures.sandbox"]
