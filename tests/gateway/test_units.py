"""Pure parts of the gateway: the upload sink over any chunking, the Batch object mapping,
the BatchJob built for a batch, and the watch cache's ordering rule."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmbatch.api.batchjob import BatchJobSpec
from llmbatch.api.lines import FileValidator, Limits, LineError, iter_validated
from llmbatch.gateway import batches, ids
from llmbatch.gateway.files import UploadSink
from llmbatch.gateway.informer import BatchJobCache
from tests.gateway.conftest import make_config
from tests.gateway.memkube import MemKube


class MemoryStore:
    """open_write as the ObjectStore contract says: the object appears on a clean exit only."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    @contextlib.contextmanager
    def open_write(self, uri: str) -> Iterator[io.BytesIO]:
        buffer = io.BytesIO()
        yield buffer
        self.objects[uri] = buffer.getvalue()


def line(custom_id: str, model: str = "m", url: str = "/v1/chat/completions") -> bytes:
    return json.dumps(
        {
            "custom_id": custom_id,
            "method": "POST",
            "url": url,
            "body": {"model": model, "messages": []},
        }
    ).encode()


def feed_in_chunks(data: bytes, cuts: list[int], limits: Limits) -> tuple[Any, MemoryStore]:
    store = MemoryStore()
    sink = UploadSink(store, "mem://x", limits, max_errors=100)  # type: ignore[arg-type]
    sink.open()
    start = 0
    for cut in [*sorted(set(c % (len(data) + 1) for c in cuts)), len(data)]:
        sink.feed(data[start:cut])
        start = cut
    return sink.finish(), store


LINES = [
    line("a"),
    line("b"),
    b"",
    line("a"),
    b"{not json",
    line("c", url="/v1/embeddings"),
    line("d", model="other"),
    b"   ",
    line("e"),
]


@settings(max_examples=200, deadline=None)
@given(
    picks=st.lists(st.integers(0, len(LINES) - 1), max_size=12),
    cuts=st.lists(st.integers(0, 10_000), max_size=8),
    final_newline=st.booleans(),
)
def test_any_chunking_gives_the_answer_of_the_whole_file(
    picks: list[int], cuts: list[int], final_newline: bool
) -> None:
    data = b"\n".join(LINES[i] for i in picks) + (b"\n" if final_newline and picks else b"")
    outcome, store = feed_in_chunks(data, cuts, Limits())
    expected = list(iter_validated(data.split(b"\n"), FileValidator()))
    errors = [e for e in expected if isinstance(e, LineError)]
    assert [(e.line, e.rule) for e in outcome.errors] == [(e.line, e.rule) for e in errors]
    assert outcome.requests == len(expected) - len(errors)
    assert outcome.size == len(data)
    # Stored exactly as sent, and only when every line passed.
    if not errors and outcome.requests:
        assert store.objects == {"mem://x": data}
    else:
        assert store.objects == {}


def test_oversized_stops_and_stores_nothing() -> None:
    data = b"\n".join([line(str(i)) for i in range(50)]) + b"\n"
    outcome, store = feed_in_chunks(data, [100, 700], Limits(max_bytes=len(data) - 1))
    assert outcome.oversized
    assert store.objects == {}


def test_a_huge_line_is_reported_without_being_held() -> None:
    limits = Limits(max_line_bytes=1000)
    data = line("a") + b"\n" + b"x" * 5000 + b"\n" + line("b") + b"\n"
    outcome, store = feed_in_chunks(data, list(range(0, len(data), 300)), limits)
    assert [(e.line, e.rule.value) for e in outcome.errors] == [(2, "line_too_long")]
    assert outcome.requests == 2
    assert store.objects == {}


def job(phase: str | None, **status: Any) -> dict[str, Any]:
    batch_id = "batch_" + "0" * 9 + "abcdefgh"
    return {
        "metadata": {
            "name": ids.batch_name(batch_id),
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {batches.BATCH_ID_LABEL: batch_id, batches.TENANT_LABEL: "t"},
            "annotations": {batches.INPUT_FILE_ANNOTATION: "file-x"},
        },
        "spec": {
            "endpoint": "/v1/completions",
            "completionWindow": "2h",
            "model": {"name": "m"},
            "metadata": {"k": "v"},
        },
        "status": {"phase": phase, **status} if phase else {},
    }


@pytest.mark.parametrize(
    "phase, status",
    [
        (None, "validating"),
        ("Validating", "validating"),
        ("Queued", "in_progress"),
        ("Running", "in_progress"),
        ("Suspended", "in_progress"),
        ("Finalizing", "finalizing"),
        ("Succeeded", "completed"),
        ("Failed", "failed"),
        ("Expired", "expired"),
        ("Cancelling", "cancelling"),
        ("Cancelled", "cancelled"),
    ],
)
def test_status_follows_the_phase(phase: str | None, status: str) -> None:
    batch = batches.to_openai(job(phase))
    assert batch["status"] == status
    assert batch["created_at"] == 1767225600
    assert batch["expires_at"] == 1767225600 + 7200
    assert batch["input_file_id"] == "file-x"
    assert batch["endpoint"] == "/v1/completions"
    assert batch["metadata"] == {"k": "v"}


def test_failed_batch_carries_errors_and_times() -> None:
    batch = batches.to_openai(
        job(
            "Failed",
            errors=[{"code": "invalid_request", "message": "bad", "line": 7}],
            timestamps={"failedAt": "2026-01-01T00:10:00Z"},
            deadline="2026-01-01T01:00:00Z",
            requestCounts={"total": 9, "completed": 0, "failed": 9},
            outputFile="s3://b/o/output.jsonl",
            errorFile="s3://b/o/errors.jsonl",
        )
    )
    assert batch["errors"] == {
        "object": "list",
        "data": [{"code": "invalid_request", "message": "bad", "param": None, "line": 7}],
    }
    assert batch["failed_at"] == 1767226200
    assert batch["expires_at"] == 1767229200
    assert batch["output_file_id"] == "file-000000000abcdefgh-out"
    assert batch["error_file_id"] == "file-000000000abcdefgh-err"
    assert ids.parse_output_file_id(batch["error_file_id"]) == ids.OutputFileRef(
        "batch_000000000abcdefgh", "errors"
    )
    # Every field of OpenAI's Batch object is present.
    assert set(batch) >= {
        "id",
        "object",
        "endpoint",
        "errors",
        "input_file_id",
        "completion_window",
        "status",
        "output_file_id",
        "error_file_id",
        "created_at",
        "in_progress_at",
        "expires_at",
        "finalizing_at",
        "completed_at",
        "failed_at",
        "expired_at",
        "cancelling_at",
        "cancelled_at",
        "request_counts",
        "usage",
        "metadata",
        "model",
    }


def test_cancel_requested_shows_cancelling_until_terminal() -> None:
    requested = job("Running")
    requested["spec"]["cancel"] = True
    requested["metadata"]["annotations"][batches.CANCEL_AT_ANNOTATION] = "2026-01-01T00:05:00Z"
    batch = batches.to_openai(requested)
    assert (batch["status"], batch["cancelling_at"]) == ("cancelling", 1767225900)
    done = job("Succeeded")
    done["spec"]["cancel"] = True
    assert batches.to_openai(done)["status"] == "completed"


def test_built_batchjob_is_a_valid_spec() -> None:
    config = make_config("bucket", "http://s3")
    manifest = batches.build_batchjob(
        config,
        batch_id="batch_000000000abcdefgh",
        tenant="t",
        input_file_id="file-x",
        input_uri="s3://bucket/gw/in",
        output_uri="s3://bucket/gw/out",
        model_name="tiny-qwen",
        model=config.models["tiny-qwen"],
        endpoint="/v1/chat/completions",
        completion_window="3h",
        metadata={"a": "b"},
    )
    spec = BatchJobSpec.model_validate(manifest["spec"])
    assert spec.parallelism == 2 and spec.resources.gpu == 0
    assert spec.storage.endpoint == "http://s3"
    assert manifest["metadata"]["name"] == "batch-000000000abcdefgh"
    assert manifest["metadata"]["labels"][batches.TENANT_LABEL] == "t"


def test_ids_sort_by_time_and_round_trip() -> None:
    early, late = ids.new_batch_id(1_000_000.0), ids.new_batch_id(2_000_000.0)
    assert early < late
    assert ids.is_batch_id(early) and not ids.is_batch_id("batch_x")
    assert ids.new_file_id(5.0) < ids.new_file_id(6.0)
    assert ids.batch_name(early).startswith("batch-") and len(ids.batch_name(early)) == 23


async def test_cache_keeps_the_newest_version() -> None:
    cache = BatchJobCache(MemKube().client("default"))
    cache.remember({"metadata": {"name": "j", "resourceVersion": "7"}, "status": {"v": 7}})
    cache._put({"metadata": {"name": "j", "resourceVersion": "6"}, "status": {"v": 6}})
    assert cache._objects["j"]["status"] == {"v": 7}
    cache._put({"metadata": {"name": "j", "resourceVersion": "8"}, "status": {"v": 8}})
    assert cache._objects["j"]["status"] == {"v": 8}
