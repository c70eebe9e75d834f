"""Tiny Qwen2 models with random weights, for the fast tests and the runner benchmark.

No model hub is reachable where the project is tested, so the project makes its own models:
a byte-level BPE tokenizer trained on a generated corpus, a ChatML-like chat template, and a
Qwen2 network with seeded random weights. The output is meaningless text, but vLLM runs the
same code paths as for a real model, and greedy decoding is reproducible, so vLLM can be
checked against Hugging Face transformers token for token.

``llmbatch models fetch tiny-qwen`` (or ``bench-qwen``) generates one into the model cache;
``make models`` generates every model fixture, these and the real ones (see catalog.py).
"""

from __future__ import annotations

import importlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from llmbatch_sandbox.modelcache import build_once, models_dir

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


def model_dir(kind: ModelKind, cache_dir: Path | None = None) -> Path:
    return models_dir(cache_dir) / f"{kind}-qwen2-v{GENERATOR_VERSION}"


def tiny_identity(kind: ModelKind) -> dict[str, Any]:
    """What the stamp of a finished ``kind`` model says (the dir name carries the version)."""
    return {"kind": kind, "generatorVersion": GENERATOR_VERSION, "seed": SEED}


def build_tiny(kind: ModelKind, out: Path) -> dict[str, Any]:
    """Generate the ``kind`` model into ``out`` (see ``modelcache.build_once``)."""
    _train_tokenizer(out)
    _build_weights(kind, out)
    return {}


def ensure_model(kind: ModelKind, cache_dir: Path | None = None) -> Path:
    """Return the directory of the ``kind`` model, generating it on first use (once across
    processes). ``llmbatch models fetch tiny-qwen`` does the same from a shell."""
    if kind not in SHAPES:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {sorted(SHAPES)}")
    return build_once(
        model_dir(kind, cache_dir), tiny_identity(kind), lambda out: build_tiny(kind, out)
    )
