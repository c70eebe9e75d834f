"""Extras beyond OpenAI's API: check a batch input without running it, and estimate its cost.

Both take either ``input_file_id`` (an uploaded file, read as a stream) or inline ``input``
(see ``inline``), and check each line with the same rules as uploads and the runner, plus
whether its model is served here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from anyio import to_thread
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from llmbatch.api.lines import FileValidator, LineError, ValidLine
from llmbatch.gateway import inline, tokens
from llmbatch.gateway.auth import PrincipalDep
from llmbatch.gateway.errors import ApiError, bad_request
from llmbatch.gateway.keys import Principal
from llmbatch.gateway.lookup import get_file
from llmbatch.gateway.routes_batches import check_endpoint
from llmbatch.gateway.routes_files import file_limits
from llmbatch.gateway.state import Gateway, GatewayDep

router = APIRouter()


class InputRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_file_id: str | None = None
    input: list[Any] | None = None
    model: str | None = None
    endpoint: str | None = None


@dataclass
class Scan:
    requests: int = 0
    endpoint: str | None = None
    models: dict[str, int] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    error_count: int = 0
    input_tokens: int = 0
    max_output_tokens: int = 0
    exact_tokens: bool = True


async def _raw_lines(
    gateway: Gateway, principal: Principal, body: InputRequest
) -> Iterator[bytes] | list[bytes]:
    if (body.input is None) == (body.input_file_id is None):
        raise bad_request("Give exactly one of input_file_id and input.", param="input_file_id")
    if body.input is not None:
        endpoint = check_endpoint(body.endpoint)
        data = inline.to_jsonl(inline.to_lines(body.input, body.model, endpoint))
        if len(data) > gateway.config.limits.max_file_bytes:
            raise ApiError(
                413, "The inline input is too large.", param="input", code="file_too_large"
            )
        return data.splitlines()
    assert body.input_file_id is not None
    view = await get_file(gateway, principal.tenant, body.input_file_id, param="input_file_id")
    return gateway.store.read_lines(view.content_uri)


def _scan(gateway: Gateway, raw_lines: Iterator[bytes] | list[bytes], count_tokens: bool) -> Scan:
    config = gateway.config
    validator = FileValidator(limits=file_limits(gateway))
    scan = Scan()
    limit = config.limits.max_reported_errors

    def report(error: LineError) -> None:
        scan.error_count += 1
        if len(scan.errors) < limit:
            scan.errors.append(
                {
                    "line": error.line,
                    "code": error.rule.value,
                    "message": error.message,
                    "custom_id": error.custom_id,
                }
            )

    for lineno, raw in enumerate(raw_lines, start=1):
        result = validator.check(lineno, raw)
        if isinstance(result, LineError):
            report(result)
        elif isinstance(result, ValidLine):
            model_name = str(result.request.body["model"])
            scan.requests += 1
            scan.models[model_name] = scan.models.get(model_name, 0) + 1
            model = config.models.get(model_name)
            if model is None:
                scan.error_count += 1
                if len(scan.errors) < limit:
                    scan.errors.append(
                        {
                            "line": lineno,
                            "code": "model_not_found",
                            "message": f"model {model_name!r} is not served here",
                            "custom_id": result.request.custom_id,
                        }
                    )
            elif count_tokens:
                counter = tokens.counter_for(model_name, model, gateway.store)
                scan.exact_tokens = scan.exact_tokens and counter.exact
                prompt = counter.count(result.request.body, result.request.url.value)
                scan.input_tokens += prompt
                scan.max_output_tokens += tokens.max_output_tokens(
                    result.request.body, prompt, model, result.request.url.value
                )
    scan.endpoint = validator.endpoint.value if validator.endpoint else None
    if len(scan.models) > 1:
        scan.error_count += 1
        scan.errors.append(
            {
                "line": None,
                "code": "mixed_models",
                "custom_id": None,
                "message": "a batch must use one model; found " + ", ".join(sorted(scan.models)),
            }
        )
    return scan


@router.post("/batches/validate")
async def validate_batch(
    body: InputRequest, gateway: GatewayDep, principal: PrincipalDep
) -> dict[str, Any]:
    raw = await _raw_lines(gateway, principal, body)
    scan = await to_thread.run_sync(_scan, gateway, raw, False)
    return {
        "object": "batch.validation",
        "valid": scan.error_count == 0 and scan.requests > 0,
        "requests": scan.requests,
        "endpoint": scan.endpoint,
        "models": sorted(scan.models),
        "error_count": scan.error_count,
        "errors": scan.errors,
    }


@router.post("/batches/cost-estimate")
async def estimate_cost(
    body: InputRequest, gateway: GatewayDep, principal: PrincipalDep
) -> dict[str, Any]:
    raw = await _raw_lines(gateway, principal, body)
    scan = await to_thread.run_sync(_scan, gateway, raw, True)
    if scan.error_count:
        raise bad_request(
            f"The input has {scan.error_count} invalid line(s); fix them first (see "
            "/v1/batches/validate).",
            param="input",
            code="invalid_file",
            extra={"errors": scan.errors},
        )
    model_name = next(iter(scan.models), None)
    price = gateway.config.prices.get(model_name or "")
    answer: dict[str, Any] = {
        "object": "batch.cost_estimate",
        "model": model_name,
        "requests": scan.requests,
        "input_tokens": scan.input_tokens,
        "max_output_tokens": scan.max_output_tokens,
        "token_count": "exact" if scan.exact_tokens else "estimated",
        "currency": "USD",
        "prices_per_million_tokens": None,
        "input_cost": None,
        "max_output_cost": None,
        "max_total_cost": None,
    }
    if price is not None:
        input_cost = scan.input_tokens * price.input / 1e6
        output_cost = scan.max_output_tokens * price.output / 1e6
        answer.update(
            prices_per_million_tokens={"input": price.input, "output": price.output},
            input_cost=round(input_cost, 9),
            max_output_cost=round(output_cost, 9),
            max_total_cost=round(input_cost + output_cost, 9),
        )
    return answer
