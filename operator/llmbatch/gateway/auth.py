"""The dependency every /v1 route goes through: bearer key, then the tier's rate limit.

It is attached to the /v1 router itself (not to each route), so a route added later cannot
forget it.
"""

from __future__ import annotations

import logging
import math
from typing import Annotated

from fastapi import Depends, Request

from llmbatch.gateway.errors import AUTHENTICATION, PERMISSION, ApiError
from llmbatch.gateway.keys import Principal
from llmbatch.gateway.state import GatewayDep
from llmbatch.kube import KubeError

log = logging.getLogger(__name__)


async def authenticate(request: Request, gateway: GatewayDep) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if not header:
        raise ApiError(
            401,
            "You didn't provide an API key. You need to provide your API key in "
            "an Authorization header using Bearer auth (i.e. Authorization: Bearer "
            "YOUR_KEY).",
            type=AUTHENTICATION,
            code="missing_api_key",
        )
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(
            401,
            "The Authorization header must be 'Bearer <API key>'.",
            type=AUTHENTICATION,
            code="invalid_authorization_header",
        )
    try:
        principal = await gateway.keys.authenticate(key.strip())
    except (KubeError, OSError) as exc:
        log.warning("cannot read the API keys: %s", exc)
        raise ApiError(
            503,
            "The gateway cannot check API keys right now; retry shortly.",
            type="service_unavailable_error",
            headers={"Retry-After": "1"},
        ) from exc
    if principal is None:
        # Never echo the key, not even in part.
        raise ApiError(
            401, "Incorrect API key provided.", type=AUTHENTICATION, code="invalid_api_key"
        )
    request.state.principal = principal
    config = gateway.config
    limit = config.tiers.get(principal.tier)
    if limit is None:
        raise ApiError(
            403,
            f"Your key's tier {principal.tier!r} is not configured on this gateway.",
            type=PERMISSION,
            code="unknown_tier",
        )
    if not config.rate_limit.enabled:
        return principal
    try:
        decision = await gateway.limiter.check(principal.key_id, limit)
    except (KubeError, OSError, RuntimeError) as exc:
        log.warning("rate limiter unavailable: %s", exc)
        raise ApiError(
            503,
            "The gateway cannot count requests right now; retry shortly.",
            type="service_unavailable_error",
            headers={"Retry-After": "1"},
        ) from exc
    request.state.ratelimit_headers = decision.headers()
    if not decision.allowed:
        gateway.metrics.rate_limited.labels(principal.tier).inc()
        window = config.rate_limit.window_seconds
        raise ApiError(
            429,
            f"Rate limit reached for requests: your {principal.tier} tier allows {limit} "
            f"requests per {window} s. Retry after the window resets.",
            type="requests",
            code="rate_limit_exceeded",
            headers={
                "Retry-After": str(max(1, math.ceil(decision.reset_seconds))),
                **decision.headers(),
            },
        )
    return principal


# Routes take the caller as ``principal: PrincipalDep``. FastAPI caches a dependency per
# request, so this reuses the router's own authentication call instead of a second one.
PrincipalDep = Annotated[Principal, Depends(authenticate)]
