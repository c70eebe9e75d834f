"""/v1/responses batch lines in the runner.

Unit tests (no model): a Responses body becomes the chat request the engine is given (messages
with the instructions first, the token limit, the structured-output format), and what comes
back is a Response object the official openai SDK accepts. Then one batch on the tiny model in
vLLM: every line answered or refused once, each answer a valid Response, usage summing to the
manifest's.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from openai.types.responses import Response, ResponseOutputMessage

from llmbatch.api.lines import Endpoint
from llmbatch.runner.engine import Finished, GenerationEngine
from llmbatch.runner.local import run_local
from llmbatch.runner.sampling import RequestError
from tests.runner.batches import by_custom_id, read_jsonl, write_lines

NAME = "tiny-qwen"


class FakeLLM:
    """Stands in for vllm.LLM at the two calls the engine makes to render and add a request,
    and hands back the outputs a test scripts."""

    def __init__(self) -> None:
        self.rendered: list[list[dict[str, Any]]] = []
        self.added: list[tuple[str, Any, Any]] = []
        self.outputs: list[Any] = []
        self.llm_engine = SimpleNamespace(
            model_config=SimpleNamespace(get_diff_sampling_param=lambda: {}),
            vllm_config=SimpleNamespace(scheduler_config=SimpleNamespace(max_num_seqs=4)),
            add_request=lambda rid, prompt, params: self.added.append((rid, prompt, params)),
            step=lambda: self.outputs,
        )

    def _preprocess_chat_one(
        self, messages: list[dict[str, Any]], chat_template: str | None, tools: Any
    ) -> dict[str, Any]:
        self.rendered.append(messages)
        return {"prompt_token_ids": [1, 2, 3]}


def finished_output(
    request_id: str, text: str, finish_reason: str, tokens: int, cached: int = 0
) -> Any:
    completion = SimpleNamespace(
        index=0, text=text, token_ids=list(range(tokens)), finish_reason=finish_reason
    )
    return SimpleNamespace(
        request_id=request_id,
        finished=True,
        prompt_token_ids=[1, 2, 3],
        outputs=[completion],
        num_cached_tokens=cached,
    )


def responses_engine(llm: Any) -> GenerationEngine:
    return GenerationEngine(llm, NAME, Endpoint.RESPONSES, {})


def test_a_responses_body_renders_as_chat_with_its_settings() -> None:
    llm = FakeLLM()
    engine = responses_engine(llm)
    body = {
        "model": NAME,
        "instructions": "Answer in JSON.",
        "input": [{"type": "message", "role": "user", "content": "Name a colour."}],
        "max_output_tokens": 12,
        "temperature": 0.3,
        "top_p": 0.7,
        "text": {"format": {"type": "json_schema", "name": "c", "schema": {"type": "object"}}},
    }
    engine.submit(5, "abc", body)
    assert llm.rendered == [
        [
            {"role": "system", "content": "Answer in JSON."},
            {"role": "user", "content": "Name a colour."},
        ]
    ]
    request_id, prompt, params = llm.added[0]
    assert request_id == "5" and prompt == {"prompt_token_ids": [1, 2, 3]}
    assert params.max_tokens == 12 and params.n == 1
    assert params.temperature == pytest.approx(0.3) and params.top_p == pytest.approx(0.7)
    assert params.structured_outputs.json == {"type": "object"}


def test_a_plain_string_input_is_one_user_message_with_no_format() -> None:
    llm = FakeLLM()
    responses_engine(llm).submit(1, "x", {"model": NAME, "input": "hi"})
    assert llm.rendered == [[{"role": "user", "content": "hi"}]]
    params = llm.added[0][2]
    assert params.structured_outputs is None and params.max_tokens is None


def test_a_refused_field_raises_before_anything_reaches_the_engine() -> None:
    llm = FakeLLM()
    with pytest.raises(RequestError, match=r"^background: "):
        responses_engine(llm).submit(1, "x", {"model": NAME, "input": "hi", "background": True})
    assert llm.added == []


def answer(llm: FakeLLM, engine: GenerationEngine, *outputs: Any) -> list[Finished]:
    llm.outputs = list(outputs)
    done = engine.step()
    assert all(isinstance(o, Finished) for o in done)
    return [o for o in done if isinstance(o, Finished)]


def test_the_answer_is_a_response_object_the_sdk_accepts() -> None:
    llm = FakeLLM()
    engine = responses_engine(llm)
    body = {
        "model": NAME,
        "input": "hi",
        "instructions": "Be brief.",
        "metadata": {"team": "a"},
        "user": "u1",
        "text": {"format": {"type": "json_object"}},
    }
    engine.submit(1, "abc", body)
    (done,) = answer(llm, engine, finished_output("1", '{"a": 1}', "stop", 4, cached=2))
    response = Response.model_validate(done.body)
    assert response.id == "resp_abc" and response.object == "response"
    assert response.status == "completed" and response.incomplete_details is None
    assert response.model == NAME and response.instructions == "Be brief."
    assert response.output_text == '{"a": 1}'  # computed by the SDK from output
    assert "output_text" not in done.body
    message = response.output[0]
    assert isinstance(message, ResponseOutputMessage) and message.id == "msg_abc"
    assert message.role == "assistant" and message.status == "completed"
    assert response.metadata == {"team": "a"} and response.user == "u1"
    assert response.text is not None and response.text.format is not None
    assert response.text.format.type == "json_object"
    assert response.usage is not None
    assert response.usage.model_dump() == {
        "input_tokens": 3,
        "input_tokens_details": {
            "cached_tokens": 2,
            "cache_write_tokens": 0,
            "cache_write_tokens_details": None,
        },
        "output_tokens": 4,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 7,
    }
    assert (done.prompt_tokens, done.completion_tokens) == (3, 4)


def test_a_generation_cut_by_the_limit_is_incomplete() -> None:
    llm = FakeLLM()
    engine = responses_engine(llm)
    engine.submit(1, "abc", {"model": NAME, "input": "hi", "max_output_tokens": 2})
    (done,) = answer(llm, engine, finished_output("1", "ab", "length", 2))
    response = Response.model_validate(done.body)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    message = response.output[0]
    assert isinstance(message, ResponseOutputMessage) and message.status == "incomplete"
    assert response.max_output_tokens == 2


# --- one batch on the tiny model in vLLM ---------------------------------------------------


def responses_line(custom_id: str, url: str = "/v1/responses", **body: Any) -> bytes:
    line = {"custom_id": custom_id, "method": "POST", "url": url, "body": {"model": NAME, **body}}
    return json.dumps(line).encode()


@pytest.fixture(scope="module")
def vllm_responses_engine(chat_engine: Any) -> GenerationEngine:
    return GenerationEngine(chat_engine.llm, chat_engine.served_name, Endpoint.RESPONSES, {})


def test_a_responses_batch_on_vllm(tmp_path: Path, vllm_responses_engine: Any) -> None:
    schema = {
        "type": "object",
        "properties": {"color": {"enum": ["red", "blue"]}},
        "required": ["color"],
        "additionalProperties": False,
    }
    lines = [
        responses_line("plain", input="Say hello.", max_output_tokens=8, temperature=0),
        responses_line(
            "items",
            instructions="You answer briefly.",
            input=[
                {"role": "user", "content": [{"type": "input_text", "text": "Hi."}]},
                {"type": "message", "role": "assistant", "content": "Hello."},
                {"role": "user", "content": "Name a colour."},
            ],
            max_output_tokens=8,
        ),
        responses_line(
            "json",
            input="A colour as JSON.",
            max_output_tokens=40,
            temperature=0,
            text={"format": {"type": "json_schema", "name": "c", "schema": schema, "strict": True}},
        ),
        responses_line("cut", input="Count on.", max_output_tokens=3, ignore_eos=True),
        responses_line("tools", input="x", tools=[{"type": "function", "name": "f"}]),
        responses_line("moderation", url="/v1/moderations", input="x"),
    ]
    source = write_lines(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out"
    manifest = run_local(
        str(source),
        str(out),
        "unused",
        NAME,
        endpoint=Endpoint.RESPONSES,
        engine=vllm_responses_engine,
    )
    outputs = by_custom_id(read_jsonl((out / "output.jsonl").read_bytes()))
    errors = by_custom_id(read_jsonl((out / "errors.jsonl").read_bytes()))
    assert set(outputs) == {"plain", "items", "json", "cut"}
    assert set(errors) == {"tools", "moderation"}
    assert errors["tools"]["error"]["code"] == "invalid_request"
    assert "body.tools" in errors["tools"]["error"]["message"]
    assert errors["moderation"]["error"]["code"] == "unsupported_endpoint"

    responses = {
        cid: Response.model_validate(row["response"]["body"]) for cid, row in outputs.items()
    }
    assert all(row["response"]["status_code"] == 200 for row in outputs.values())
    assert responses["cut"].status == "incomplete"
    assert responses["cut"].usage is not None and responses["cut"].usage.output_tokens == 3
    # The grammar holds: a random model may stall in whitespace, but writes nothing the schema
    # forbids (see test_sampling_parameters_reach_the_engine for the unconstrained contrast).
    constrained = responses["json"].output_text
    assert constrained.startswith("{") and set(constrained) <= set('{}":, \t\n' + "colorredblue")
    if responses["json"].status == "completed":
        assert json.loads(constrained)["color"] in ("red", "blue")
    for response in responses.values():
        assert response.model == NAME and response.object == "response"
        assert response.usage is not None
        assert response.usage.total_tokens == (
            response.usage.input_tokens + response.usage.output_tokens
        )
    assert manifest["requestCounts"] == {"total": 6, "completed": 4, "failed": 2}
    usages = [r.usage for r in responses.values() if r.usage is not None]
    assert manifest["usage"]["promptTokens"] == sum(u.input_tokens for u in usages)
    assert manifest["usage"]["completionTokens"] == sum(u.output_tokens for u in usages)
