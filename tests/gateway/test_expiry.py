"""Expiry with the gateway's injectable clock (no sleeps): ``expires_after`` on upload and
``output_expires_after`` on batch creation are honoured, ``expires_at`` is reported, expired
files answer 404 at once, and the sweeper deletes their objects, safely from several replicas
at the same time. Bad policies get a 400 naming the field and the bounds."""

from __future__ import annotations

import asyncio
import io
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest

from llmbatch.api.timefmt import rfc3339
from llmbatch.gateway.expiry import OUTPUTS_DELETED_ANNOTATION
from llmbatch.gateway.sweeper import sweep_files, sweep_once
from llmbatch.storage import get_store
from tests.gateway.conftest import NAMESPACE, GatewayEnv
from tests.gateway.test_sdk import batch_file, client, output_line

HOUR = 3600


def upload(sdk: openai.OpenAI, seconds: int) -> Any:
    return sdk.files.create(
        file=("in.jsonl", io.BytesIO(batch_file(2))),
        purpose="batch",
        expires_after={"anchor": "created_at", "seconds": seconds},
    )


def objects(env: GatewayEnv, prefix: str) -> list[str]:
    store = get_store(f"s3://{env.bucket}/", env.settings)
    return [info.uri for info in store.list(f"s3://{env.bucket}/gw/{prefix}")]


def test_an_expired_upload_is_gone_at_once_and_swept_later(gateway_env: GatewayEnv) -> None:
    sdk = client(gateway_env, gateway_env.key())
    kept = sdk.files.create(file=("keep.jsonl", io.BytesIO(batch_file(1))), purpose="batch")
    assert kept.expires_at is None
    uploaded = upload(sdk, HOUR)
    assert uploaded.expires_at == uploaded.created_at + HOUR
    assert sdk.files.retrieve(uploaded.id).expires_at == uploaded.expires_at
    assert uploaded.id in {f.id for f in sdk.files.list()}

    gateway_env.clock.advance(HOUR)
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.files.retrieve(uploaded.id)
    assert missing.value.body == {  # OpenAI's error shape
        "message": f"No such file: '{uploaded.id}'",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    with pytest.raises(openai.NotFoundError):
        sdk.files.content(uploaded.id)
    with pytest.raises(openai.NotFoundError):
        sdk.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert {f.id for f in sdk.files.list()} == {kept.id}
    # Not deleted yet: only hidden. The sweep deletes the objects and the expiry marker.
    assert any(uploaded.id in uri for uri in objects(gateway_env, "tenants/"))

    swept = asyncio.run(sweep_once(gateway_env.gateway))
    assert swept.files >= 1
    assert not any(uploaded.id in uri for uri in objects(gateway_env, ""))
    assert any(kept.id in uri for uri in objects(gateway_env, "tenants/"))
    # Sweeping again finds nothing and fails nothing.
    assert asyncio.run(sweep_once(gateway_env.gateway)).files == 0


def test_two_sweepers_at_once_delete_everything_once(gateway_env: GatewayEnv) -> None:
    sdk = client(gateway_env, gateway_env.key())
    later = upload(sdk, 10 * HOUR)
    due = [upload(sdk, HOUR).id for _ in range(6)]
    gateway_env.clock.advance(HOUR)
    files, now = gateway_env.gateway.files, gateway_env.clock()
    with ThreadPoolExecutor(2) as pool:
        counts = list(pool.map(lambda _: sweep_files(files, now), range(2)))
    assert sum(counts) >= len(due)
    left = objects(gateway_env, "")
    assert not [uri for uri in left if any(file_id in uri for file_id in due)]
    # The file that is not due yet is untouched, marker included.
    assert sum(later.id in uri for uri in left) == 3
    assert sdk.files.retrieve(later.id).id == later.id


@pytest.mark.parametrize(
    ("policy", "fragment"),
    [
        ({"anchor": "created_at", "seconds": 3599}, "between 3600 (1 hour) and 2592000 (30 days)"),
        ({"anchor": "created_at", "seconds": 2592001}, "between 3600 (1 hour) and 2592000"),
        ({"anchor": "last_active_at", "seconds": 7200}, "anchor must be 'created_at'"),
        ({"anchor": "created_at", "seconds": "soon"}, "must be an integer from 3600 to 2592000"),
    ],
)
def test_bad_policies_are_refused_with_field_and_bounds(
    gateway_env: GatewayEnv, policy: dict[str, Any], fragment: str
) -> None:
    sdk = client(gateway_env, gateway_env.key())
    with pytest.raises(openai.BadRequestError) as upload_error:
        sdk.files.create(
            file=("in.jsonl", io.BytesIO(batch_file(1))),
            purpose="batch",
            expires_after=policy,  # type: ignore[arg-type]
        )
    assert fragment in upload_error.value.message
    assert "expires_after" in upload_error.value.message
    assert upload_error.value.param == "expires_after"

    good = sdk.files.create(file=("in.jsonl", io.BytesIO(batch_file(1))), purpose="batch")
    with pytest.raises(openai.BadRequestError) as batch_error:
        sdk.batches.create(
            input_file_id=good.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            output_expires_after=policy,  # type: ignore[arg-type]
        )
    assert fragment in batch_error.value.message
    assert "output_expires_after" in batch_error.value.message
    assert batch_error.value.param == "output_expires_after"


def finish_now(env: GatewayEnv, batch_id: str) -> str:
    """The batch succeeds now (by the gateway's clock), with one output line."""
    name = env.batch_name(batch_id)
    job = env.kube.get(NAMESPACE, "batchjobs", name)
    assert job is not None
    prefix = job["spec"]["output"]
    get_store(prefix, env.settings).write_bytes(
        f"{prefix}/output.jsonl", (json.dumps(output_line("req-0", "a")) + "\n").encode()
    )
    env.kube.set_status(
        NAMESPACE,
        name,
        {
            "phase": "Succeeded",
            "requestCounts": {"total": 1, "completed": 1, "failed": 0},
            "completionTime": rfc3339(env.clock()),
            "outputFile": f"{prefix}/output.jsonl",
        },
    )
    return f"{prefix}/output.jsonl"


def test_output_files_expire_after_their_creation(gateway_env: GatewayEnv) -> None:
    sdk = client(gateway_env, gateway_env.key())
    uploaded = sdk.files.create(file=("in.jsonl", io.BytesIO(batch_file(1))), purpose="batch")
    batch = sdk.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        output_expires_after={"anchor": "created_at", "seconds": 2 * HOUR},
    )
    output_uri = finish_now(gateway_env, batch.id)
    done = sdk.batches.retrieve(batch.id)
    assert done.output_file_id is not None
    output = sdk.files.retrieve(done.output_file_id)
    assert output.expires_at == output.created_at + 2 * HOUR
    assert sdk.files.content(done.output_file_id).text

    gateway_env.clock.advance(2 * HOUR)
    with pytest.raises(openai.NotFoundError):
        sdk.files.retrieve(done.output_file_id)
    with pytest.raises(openai.NotFoundError):
        sdk.files.content(done.output_file_id)
    assert done.output_file_id not in {f.id for f in sdk.files.list()}
    store = get_store(output_uri, gateway_env.settings)
    assert store.exists(output_uri)

    assert asyncio.run(sweep_once(gateway_env.gateway)).batches == 1
    assert not store.exists(output_uri)
    job = gateway_env.kube.get(NAMESPACE, "batchjobs", gateway_env.batch_name(batch.id))
    assert job is not None
    assert OUTPUTS_DELETED_ANNOTATION in job["metadata"]["annotations"]
    # Recorded: the next sweep does not look at this batch again.
    assert asyncio.run(sweep_once(gateway_env.gateway)).batches == 0
    # The batch itself stays readable.
    assert sdk.batches.retrieve(batch.id).status == "completed"
