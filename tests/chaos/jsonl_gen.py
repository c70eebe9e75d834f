"""Hypothesis strategies for adversarial batch input files, and the oracle that says what the
shared line rules must answer for each generated line.

A generated file is a list of ``GenLine``: the raw bytes (no newline) and what the generator
knows about them. ``kind`` is:

- ``blank``: whitespace only; skipped everywhere and counted nowhere;
- ``bad``: broken whatever came before (invalid UTF-8, not JSON, nesting too deep for the
  parser, wrong types, raw NUL bytes, a BOM, a custom_id too long, ...); never changes what
  later lines are judged against;
- ``request``: a well-formed request whose verdict depends on the lines before it (a repeated
  custom_id is a duplicate; a url other than the file's first valid one is mixed) and on the
  line-size limit.

``expected(lines, ...)`` replays those rules independently of ``FileValidator``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from hypothesis import strategies as st

from llmbatch.api.lines import MAX_CUSTOM_ID_LENGTH, Endpoint, LineRule

Kind = Literal["blank", "bad", "request"]
MODEL = "tiny-qwen"
URLS = [e.value for e in Endpoint]
BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class GenLine:
    raw: bytes
    kind: Kind
    custom_id: str | None = None
    url: str | None = None
    # The rule a bad line breaks, when the generator knows it for sure.
    rule: LineRule | None = None


@dataclass(frozen=True)
class Verdict:
    line: int
    valid: bool
    rule: LineRule | None = None
    custom_id: str | None = None


# A small pool makes duplicates frequent; the odd ones stress encoders and shells.
CUSTOM_IDS = st.one_of(
    st.sampled_from(["a", "b", "c", "req-1", "req-2"]),
    st.sampled_from(
        [
            "\x00nul",  # NUL inside the string (escaped in JSON: legal)
            "\ud800",  # a lone surrogate: legal JSON, not encodable as UTF-8
            "é-ü-🚀",
            "; rm -rf / #",
            "$(touch /tmp/pwned)",
            "../../etc/passwd",
            "--trust-remote-code",
            "a\nb\r\nc",  # escaped newlines: still one line
            "x" * MAX_CUSTOM_ID_LENGTH,
        ]
    ),
    st.text(min_size=1, max_size=40),
)


def _json(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def _nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


@st.composite
def request_lines(draw: st.DrawFn, urls: list[str] | None = None, model: str = MODEL) -> GenLine:
    custom_id = draw(CUSTOM_IDS)
    url = draw(st.sampled_from(urls or URLS))
    body: dict[str, Any] = {"model": model, "max_tokens": draw(st.integers(1, 3))}
    if url == Endpoint.CHAT_COMPLETIONS.value:
        body["messages"] = [{"role": "user", "content": draw(st.text(max_size=30))}]
    elif url == Endpoint.COMPLETIONS.value:
        body["prompt"] = draw(st.text(max_size=30))
    else:
        body = {"model": model, "input": draw(st.text(min_size=1, max_size=30))}
    extra = draw(st.sampled_from(["none", "deep", "big", "unicode"]))
    if extra == "deep":
        # Deep but within what the JSON parser takes: the line stays a valid request.
        body["metadata_blob"] = _nested(draw(st.integers(10, 400)))
    elif extra == "big":
        body["padding"] = "p" * draw(st.integers(1000, 6000))
    elif extra == "unicode":
        # A lone surrogate in the body is legal JSON and passes the rules (body is free-form).
        body["note"] = draw(st.text(min_size=1, max_size=20)) + draw(
            st.sampled_from(["", "\udc80"])
        )
    line = {"custom_id": custom_id, "method": "POST", "url": url, "body": body}
    raw = (
        _json(line)
        if draw(st.booleans())
        else json.dumps(line, ensure_ascii=False).encode("utf-8", "surrogatepass")
    )
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        # ensure_ascii=False wrote a surrogate as CESU bytes, which is not UTF-8: a bad line.
        return GenLine(raw, "bad", rule=LineRule.INVALID_UTF8)
    if "\ud800" in custom_id:
        # Legal JSON, but not a str the line model takes (pydantic refuses lone surrogates).
        return GenLine(raw, "bad", rule=LineRule.INVALID_BODY)
    ending = draw(st.sampled_from([b"", b"\r", b" ", b"\t\r"]))
    lead = draw(st.sampled_from([b"", b"  ", b"\t"]))
    return GenLine(lead + raw + ending, "request", custom_id, url)


def _valid_dict(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "custom_id": draw(st.sampled_from(["a", "b", "z"])),
        "method": "POST",
        "url": draw(st.sampled_from(URLS)),
        "body": {"model": MODEL, "messages": []},
    }


@st.composite
def bad_lines(draw: st.DrawFn) -> GenLine:
    which = draw(
        st.sampled_from(
            [
                "invalid_utf8",
                "garbage",
                "deep_array",
                "deep_object",
                "not_object",
                "wrong_type",
                "raw_nul",
                "bom",
                "long_id",
                "truncated",
            ]
        )
    )
    if which == "invalid_utf8":
        head = draw(st.binary(max_size=20)).replace(b"\n", b"")
        return GenLine(head + b"\xff\xfe\x80" + _json(_valid_dict(draw)), "bad")
    if which == "garbage":
        text = draw(st.binary(min_size=1, max_size=200)).replace(b"\n", b"")
        if not text.strip():
            return GenLine(text, "blank")
        if text.lstrip()[:1] in (b"{", b"[", b'"') or text.strip()[:1].isdigit():
            text = b"#" + text  # keep it from being a JSON value by chance
        return GenLine(text, "bad")
    if which == "deep_array":
        depth = draw(st.integers(2_000, 100_000))
        closed = draw(st.booleans())
        return GenLine(b"[" * depth + (b"]" * depth if closed else b""), "bad")
    if which == "deep_object":
        depth = draw(st.integers(2_000, 50_000))
        return GenLine(b'{"custom_id":' * depth + b"1" + b"}" * depth, "bad")
    if which == "not_object":
        value = draw(st.one_of(st.integers(), st.text(max_size=10), st.lists(st.integers())))
        return GenLine(_json(value), "bad", rule=LineRule.NOT_AN_OBJECT)
    if which == "wrong_type":
        line = _valid_dict(draw)
        field, value, rule = draw(
            st.sampled_from(
                [
                    ("custom_id", 7, LineRule.MISSING_CUSTOM_ID),
                    ("custom_id", "", LineRule.MISSING_CUSTOM_ID),
                    ("custom_id", None, LineRule.MISSING_CUSTOM_ID),
                    ("custom_id", ["a"], LineRule.MISSING_CUSTOM_ID),
                    ("method", "GET", LineRule.INVALID_METHOD),
                    ("method", None, LineRule.INVALID_METHOD),
                    ("url", "/v1/assistants", LineRule.INVALID_URL),
                    ("url", 42, LineRule.INVALID_URL),
                    ("url", "/v1/chat/completions; rm -rf /", LineRule.INVALID_URL),
                    ("body", [], LineRule.INVALID_BODY),
                    ("body", "x", LineRule.INVALID_BODY),
                    ("body", {"model": 3}, LineRule.MISSING_MODEL),
                    ("body", {"model": ""}, LineRule.MISSING_MODEL),
                    ("body", {}, LineRule.MISSING_MODEL),
                    ("extra", True, LineRule.INVALID_BODY),
                ]
            )
        )
        line[field] = value
        if field == "custom_id":
            # Judged before duplicates; keep the others' ids away from the pool.
            return GenLine(_json(line), "bad", rule=rule)
        line["custom_id"] = "bad-" + str(draw(st.integers(0, 10**9)))
        return GenLine(_json(line), "bad", rule=rule)
    if which == "raw_nul":
        line = _json(_valid_dict(draw))
        cut = line.index(b'"custom_id": "') + len(b'"custom_id": "')
        return GenLine(line[:cut] + b"\x00" + line[cut:], "bad", rule=LineRule.INVALID_JSON)
    if which == "bom":
        return GenLine(BOM + _json(_valid_dict(draw)), "bad", rule=LineRule.INVALID_JSON)
    if which == "long_id":
        line = _valid_dict(draw)
        line["custom_id"] = "L" * (MAX_CUSTOM_ID_LENGTH + draw(st.integers(1, 100)))
        return GenLine(_json(line), "bad", rule=LineRule.MISSING_CUSTOM_ID)
    line_bytes = _json(_valid_dict(draw))
    cut = draw(st.integers(1, len(line_bytes) - 1))
    return GenLine(line_bytes[:cut], "bad", rule=LineRule.INVALID_JSON)


BLANK = st.sampled_from([b"", b" ", b"\r", b"\t \x0b\x0c", b"   \r"]).map(
    lambda raw: GenLine(raw, "blank")
)


def jsonl_files(
    max_lines: int = 25, urls: list[str] | None = None, model: str = MODEL
) -> st.SearchStrategy[list[GenLine]]:
    line = st.one_of(request_lines(urls, model), request_lines(urls, model), bad_lines(), BLANK)
    return st.lists(line, min_size=1, max_size=max_lines)


def join(lines: list[GenLine], crlf: bool = False, final_newline: bool = True) -> bytes:
    sep = b"\r\n" if crlf else b"\n"
    data = sep.join(line.raw for line in lines)
    return data + sep if final_newline else data


def expected(
    lines: list[GenLine], max_line_bytes: int, endpoint: str | None = None
) -> list[Verdict]:
    """What the shared rules must say about each non-blank line, in order."""
    seen: set[str] = set()
    verdicts = []
    for lineno, line in enumerate(lines, start=1):
        stripped = line.raw.strip()
        if not stripped:
            continue
        if len(stripped) > max_line_bytes:
            verdicts.append(Verdict(lineno, False, LineRule.LINE_TOO_LONG))
        elif line.kind != "request":
            verdicts.append(Verdict(lineno, False, line.rule))
        elif line.custom_id in seen:
            verdicts.append(Verdict(lineno, False, LineRule.DUPLICATE_CUSTOM_ID, line.custom_id))
        elif endpoint is not None and line.url != endpoint:
            verdicts.append(Verdict(lineno, False, LineRule.MIXED_URL, line.custom_id))
        else:
            assert line.custom_id is not None
            seen.add(line.custom_id)
            endpoint = endpoint or line.url
            verdicts.append(Verdict(lineno, True, None, line.custom_id))
    return verdicts
