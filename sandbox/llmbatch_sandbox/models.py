"""Tiny Qwen2 models with random weights for tests, the demo and the benchmark.

No model hub is reachable where the project is tested, so the project makes its own models:
a byte-level BPE tokenizer trained on a generated corpus, a ChatML-like chat template, and a
Qwen2 network with seeded random weights. The output is meaningless text, but vLLM runs the
same code paths as for a real model, and greedy decoding is reproducible, so vLLM can be
checked against Hugging Face transformers token for token.

``python -m llmbatch_sandbox.models --all`` generates every kind into the cache dir.
"""

from __future__ import annotations

import argparse
import fcntl
import importlib
import json
import os
import random
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

ModelKind = Literal["tiny", "bench"]

# Bump when anything below changes what is generated: the cache dir name carries it, so an old
# cache is never mistaken for the new model.
GENERATOR_VERSION = 1
SEED = 20240607
VOCAB_SIZE = 1024
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# Served name the tests and the demo use for the tiny model.
TINY_SERVED_NAME = "tiny-qwen"
BENCH_SERVED_NAME = "bench-qwen"


@dataclass(frozen=True)
class ModelShape:
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int


# head_dim = hidden / heads must stay >= 32: the CPU attention kernel crashes below that.
SHAPES: dict[str, ModelShape] = {
    # ~0.6M parameters: starts in seconds, for tests.
    "tiny": ModelShape(128, 256, 2, 4, 2, 2048),
    # ~14.7M parameters: enough work per token that engine scheduling shows in a benchmark.
    "bench": ModelShape(512, 1024, 6, 8, 4, 2048),
}

_WORD_TEXT = (
    "the of and to in is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there been one all we their can has more do if "
    "will would about so what up out when who some them time into only other new could these "
    "then two first may any like now my such over our even most made after also did many "
    "before must through back years where much your way well down should because each just "
    "those people how too little state good very make world still own see men work long get "
    "here between both life being under never day same another know while last might us great "
    "old year off come since against go came right used take three batch model request token "
    "output input shard queue engine cluster node pod job operator storage bucket deadline "
    "progress throughput latency memory kernel tensor vector matrix network server client file "
    "line error status result answer question summary translate explain write list count"
)
_WORDS = _WORD_TEXT.split()
_PUNCT = [".", ",", "?", "!", ":", ";"]


def _corpus(rng: random.Random, sentences: int) -> Iterator[str]:
    """Deterministic training text: English-like sentences, numbers, JSON and chat markup,
    so common inputs tokenize into few tokens."""
    for i in range(sentences):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 18))]
        words[0] = words[0].capitalize()
        sentence = " ".join(words) + rng.choice(_PUNCT)
        kind = i % 10
        if kind == 7:
            sentence = json.dumps(
                {rng.choice(_WORDS): rng.choice(_WORDS), "n": rng.randint(0, 999)}
            )
        elif kind == 8:
            sentence = f"<|im_start|>user\n{sentence}<|im_end|>\n<|im_start|>assistant\n"
        elif kind == 9:
            sentence = f"{rng.randint(0, 10**6)} + {rng.randint(0, 999)} = {rng.random():.4f}"
        yield sentence


def _train_tokenizer(out_dir: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    transformers: Any = importlib.import_module("transformers")

    tokenizer = Tokenizer(models.BPE())
    # Byte-level: every byte string is encodable, so no input is "unknown" to the model.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(random.Random(SEED), 20_000), trainer=trainer)
    wrapped = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
        model_max_length=2048,
    )
    wrapped.save_pretrained(str(out_dir))


def _build_weights(kind: str, out_dir: Path) -> None:
    import torch
    from tokenizers import Tokenizer

    # transformers' own annotations do not satisfy mypy --strict; treat the module as Any.
    transformers: Any = importlib.import_module("transformers")

    vocab = Tokenizer.from_file(str(out_dir / "tokenizer.json"))
    eos_id = vocab.token_to_id("<|im_end|>")
    pad_id = vocab.token_to_id("<|endoftext|>")
    shape = SHAPES[kind]
    config = transformers.Qwen2Config(
        vocab_size=VOCAB_SIZE,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        max_position_embeddings=shape.max_position_embeddings,
        tie_word_embeddings=True,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        bos_token_id=pad_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        # Wider than the default 0.02 so logits are peaked: greedy argmax then has clear
        # margins and float noise between engines cannot flip it.
        initializer_range=0.1,
        dtype="float32",
    )
    torch.manual_seed(SEED)
    model = transformers.Qwen2ForCausalLM(config).to(torch.float32).eval()
    model.save_pretrained(str(out_dir), safe_serialization=True)
    transformers.GenerationConfig(
        bos_token_id=pad_id, eos_token_id=eos_id, pad_token_id=pad_id, do_sample=False
    ).save_pretrained(str(out_dir))


def default_cache_dir() -> Path:
    env = os.environ.get("LLMBATCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "llmbatch"


def model_dir(kind: ModelKind, cache_dir: Path | None = None) -> Path:
    return (cache_dir or default_cache_dir()) / "models" / f"{kind}-qwen2-v{GENERATOR_VERSION}"


def ensure_model(kind: ModelKind, cache_dir: Path | None = None) -> Path:
    """Return the directory of the ``kind`` model, generating it on first use.

    Safe across processes: generation runs under a file lock into a temporary dir that is
    renamed into place, so a reader sees either no model or a whole one.
    """
    if kind not in SHAPES:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {sorted(SHAPES)}")
    target = model_dir(kind, cache_dir)
    done_marker = target / "llmbatch-model.json"
    if done_marker.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done_marker.exists():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            _train_tokenizer(tmp)
            _build_weights(kind, tmp)
            (tmp / "llmbatch-model.json").write_text(
                json.dumps({"kind": kind, "generatorVersion": GENERATOR_VERSION, "seed": SEED})
            )
            if target.exists():  # a half-written dir from a generator that crashed
                shutil.rmtree(target)
            tmp.rename(target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("kinds", nargs="*", help=f"model kinds: {sorted(SHAPES)}")
    parser.add_argument("--all", action="store_true", help="generate every kind")
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: $LLMBATCH_CACHE")
    args = parser.parse_args(argv)
    kinds: list[ModelKind] = ["tiny", "bench"] if args.all or not args.kinds else args.kinds
    unknown = [kind for kind in kinds if kind not in SHAPES]
    if unknown:
        parser.error(f"unknown model kinds {unknown}; choose from {sorted(SHAPES)}")
    for kind in kinds:
        print(f"{kind}: {ensure_model(kind, args.cache_dir)}", file=sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
