"""Result records: OpenAI batch output/error lines, and how they are stored in parts.

A part line is ``b"<line> <kind> <prompt_tokens> <completion_tokens> <json>\\n"``: the input
line number it answers, 0 (output.jsonl) or 1 (errors.jsonl), its token usage, then the exact
OpenAI batch line. The small prefix lets a restarted runner rebuild its done-set, and finalize
route and count lines, without parsing or re-serialising the JSON.

Ids are derived from the batch and the line number, not drawn at random, so recomputing a
request after a restart, or re-running finalize, gives byte-identical ids.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from llmbatch.api.lines import ErrorCode

OUTPUT = 0
ERRORS = 1


def stable_id(batch_key: str, lineno: int) -> str:
    return hashlib.blake2b(f"{batch_key}\n{lineno}".encode(), digest_size=12).hexdigest()


@dataclass(frozen=True)
class Record:
    lineno: int
    kind: int  # OUTPUT or ERRORS
    prompt_tokens: int
    completion_tokens: int
    line: bytes  # the OpenAI batch line, JSON, no newline

    def encode(self) -> bytes:
        head = f"{self.lineno} {self.kind} {self.prompt_tokens} {self.completion_tokens} "
        return head.encode() + self.line + b"\n"


def decode_record(raw: bytes) -> Record:
    """Parse one part line (with or without its newline)."""
    fields = raw.rstrip(b"\n").split(b" ", 4)
    if len(fields) != 5:
        raise ValueError(f"malformed part record: {raw[:80]!r}")
    return Record(int(fields[0]), int(fields[1]), int(fields[2]), int(fields[3]), fields[4])


def _dumps(obj: dict[str, Any]) -> bytes:
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (legal in JSON "\\udc80", not in UTF-8): keep it as an escape.
        return json.dumps(obj, separators=(",", ":")).encode("ascii")


def success_record(
    batch_key: str,
    lineno: int,
    custom_id: str,
    body: dict[str, Any],
    prompt_tokens: int,
    completion_tokens: int,
) -> Record:
    sid = stable_id(batch_key, lineno)
    line = {
        "id": f"batch_req_{sid}",
        "custom_id": custom_id,
        "response": {"status_code": 200, "request_id": f"req_{sid}", "body": body},
        "error": None,
    }
    return Record(lineno, OUTPUT, prompt_tokens, completion_tokens, _dumps(line))


def rejected_record(
    batch_key: str, lineno: int, custom_id: str | None, status_code: int, message: str
) -> Record:
    """A request the engine refused (prompt too long, bad parameters): an HTTP-style error
    response, as the OpenAI batch API reports it, plus ``error`` naming the line."""
    sid = stable_id(batch_key, lineno)
    error_type = "invalid_request_error" if status_code < 500 else "server_error"
    line = {
        "id": f"batch_req_{sid}",
        "custom_id": custom_id,
        "response": {
            "status_code": status_code,
            "request_id": f"req_{sid}",
            "body": {
                "error": {"message": message, "type": error_type, "param": None, "code": None}
            },
        },
        "error": {"code": ErrorCode.ENGINE_ERROR.value, "message": message, "line": lineno},
    }
    return Record(lineno, ERRORS, 0, 0, _dumps(line))


def error_record(
    batch_key: str, lineno: int, custom_id: str | None, code: str, message: str
) -> Record:
    """A request that never ran: invalid line, unknown model, expired or cancelled."""
    line = {
        "id": f"batch_req_{stable_id(batch_key, lineno)}",
        "custom_id": custom_id,
        "response": None,
        "error": {"code": code, "message": message, "line": lineno},
    }
    return Record(lineno, ERRORS, 0, 0, _dumps(line))


def stop_message(code: str) -> str:
    if code == ErrorCode.BATCH_EXPIRED.value:
        return "the batch's completion window ended before this request ran"
    return "the batch was cancelled before this request ran"


def custom_id_of(raw: bytes) -> str | None:
    """Best-effort custom_id of a raw line, for error lines about lines that never ran."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    value = data.get("custom_id") if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else None
