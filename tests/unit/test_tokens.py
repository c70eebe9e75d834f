"""The token estimate rule (llmbatch.api.tokens) without a tokenizer."""

from __future__ import annotations

from pathlib import Path

from llmbatch.api.tokens import PromptCounter, completion_budget, heuristic_tokens, tokenizer_dir


def test_heuristic_counts_utf8_bytes_and_chat_messages() -> None:
    assert heuristic_tokens({"prompt": "abcde"}) == 2
    assert heuristic_tokens({"prompt": "日本"}) == 2  # 6 bytes
    parts = [{"type": "text", "text": "abcd"}, {"type": "image_url", "image_url": {"url": "x"}}]
    body = {"messages": [{"role": "user", "content": parts}, {"role": "assistant"}]}
    assert heuristic_tokens(body) == 1 + 2 * 4
    assert heuristic_tokens({"messages": [{"role": "user", "content": "\udc80"}]}) == 1 + 4


def test_token_id_prompts_count_their_ids() -> None:
    assert heuristic_tokens({"prompt": [[1, 2], [3]]}) == 3
    assert heuristic_tokens({"input": ["abcd", "ab"]}) == 2
    assert heuristic_tokens({"input": []}) == 0
    assert PromptCounter().count({"prompt": [7, 8, 9]}) == 3
    assert not PromptCounter().exact


def test_completion_budget_per_choice() -> None:
    assert completion_budget({"max_tokens": 5, "n": 2}, "/v1/completions", 9) == (10, False)
    assert completion_budget({"n": 0}, "/v1/completions", 9) == (9, True)
    assert completion_budget({"max_tokens": 5}, "/v1/embeddings", 9) == (0, False)


def test_tokenizer_dir_is_local_only(tmp_path: Path) -> None:
    assert tokenizer_dir(str(tmp_path)) is None
    (tmp_path / "tokenizer.json").write_text("{}")
    assert tokenizer_dir(str(tmp_path)) == tmp_path
    assert tokenizer_dir(f"file://{tmp_path}") == tmp_path
    assert tokenizer_dir("hf://Qwen/Qwen2.5-0.5B") is None
    assert tokenizer_dir(None) is None
