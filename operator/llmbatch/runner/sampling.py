"""OpenAI request bodies to vLLM sampling parameters.

Follows the OpenAI API and, where OpenAI is silent, what vLLM's own server does (defaults from
the model's generation_config, vLLM's extra fields such as top_k), so a batch gives the same
results here as through ``vllm serve`` or vLLM's run_batch. A value of the wrong type or out
of range raises RequestError, which becomes a 400 error line for that request alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vllm import SamplingParams
from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams


class RequestError(Exception):
    """The request cannot run as given; the batch goes on without it."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


def _number(body: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = body.get(name)
    if value is None:
        return None
    # bool is an int in Python; OpenAI does not accept true for a number.
    if isinstance(value, bool) or not isinstance(value, kind):
        raise RequestError(f"{name} must be a number, got {value!r}")
    return value


def _int(body: Mapping[str, Any], name: str) -> int | None:
    value = _number(body, name, int)
    return None if value is None else int(value)


def _float(body: Mapping[str, Any], name: str) -> float | None:
    value = _number(body, name, (int, float))
    return None if value is None else float(value)


def _stop(body: Mapping[str, Any]) -> list[str] | None:
    stop = body.get("stop")
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop) and len(stop) <= 4:
        return list(stop)
    raise RequestError("stop must be a string or a list of up to 4 strings")


def _structured(body: Mapping[str, Any]) -> StructuredOutputsParams | None:
    fmt = body.get("response_format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or not isinstance(fmt.get("type"), str):
        raise RequestError("response_format must be an object with a type")
    kind = fmt["type"]
    if kind == "text":
        return None
    if kind == "json_object":
        return StructuredOutputsParams(json_object=True)
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise RequestError("response_format.json_schema.schema must be a JSON Schema object")
        return StructuredOutputsParams(json=schema)
    raise RequestError(f"response_format.type {kind!r} is not supported")


def _logit_bias(body: Mapping[str, Any]) -> dict[int, float] | None:
    bias = body.get("logit_bias")
    if bias is None:
        return None
    if not isinstance(bias, dict):
        raise RequestError("logit_bias must be an object of token id to bias")
    try:
        return {int(k): float(v) for k, v in bias.items()}
    except (TypeError, ValueError) as exc:
        raise RequestError(f"logit_bias: {exc}") from exc


def build_sampling_params(
    body: Mapping[str, Any], defaults: Mapping[str, Any], *, chat: bool
) -> SamplingParams:
    if chat:
        max_tokens = _int(body, "max_completion_tokens")
        if max_tokens is None:
            max_tokens = _int(body, "max_tokens")
        top_logprobs = _int(body, "top_logprobs")
        want_logprobs = body.get("logprobs")
        if want_logprobs is not None and not isinstance(want_logprobs, bool):
            raise RequestError("logprobs must be a boolean for chat completions")
        logprobs = (top_logprobs or 0) if want_logprobs else None
        if top_logprobs is not None and not want_logprobs:
            raise RequestError("top_logprobs requires logprobs: true")
    else:
        # OpenAI's legacy completions default to 16 tokens; chat runs to the context end.
        max_tokens = _int(body, "max_tokens")
        if "max_tokens" not in body:
            max_tokens = 16
        logprobs = _int(body, "logprobs")
    if max_tokens is not None and max_tokens < 1:
        raise RequestError("max_tokens must be at least 1")

    def pick(name: str, value: Any, fallback: Any) -> Any:
        if value is not None:
            return value
        return defaults.get(name, fallback)

    n = _int(body, "n")
    args: dict[str, Any] = {
        "n": 1 if n is None else n,
        "temperature": pick("temperature", _float(body, "temperature"), 1.0),
        "top_p": pick("top_p", _float(body, "top_p"), 1.0),
        "top_k": pick("top_k", _int(body, "top_k"), 0),
        "min_p": pick("min_p", _float(body, "min_p"), 0.0),
        "repetition_penalty": pick("repetition_penalty", _float(body, "repetition_penalty"), 1.0),
        "presence_penalty": _float(body, "presence_penalty") or 0.0,
        "frequency_penalty": _float(body, "frequency_penalty") or 0.0,
        "seed": _int(body, "seed"),
        "stop": _stop(body),
        "max_tokens": max_tokens,
        "min_tokens": _int(body, "min_tokens") or 0,
        "logprobs": logprobs,
        "ignore_eos": bool(body.get("ignore_eos", False)),
        "logit_bias": _logit_bias(body),
        "structured_outputs": _structured(body),
        # Only the finished result matters in a batch: no per-token outputs to build.
        "output_kind": RequestOutputKind.FINAL_ONLY,
    }
    if body.get("best_of") not in (None, 1):
        raise RequestError("best_of is not supported")
    try:
        return SamplingParams(**args)
    except Exception as exc:  # vLLM's validation errors are not all ValueErrors
        raise RequestError(str(exc)) from exc
