"""Fixtures of the security suite: the gateway tests' own gateway (uvicorn in a thread over
moto S3 and an in-memory Kubernetes API), so both suites test one setup."""

from tests.gateway.conftest import gateway_env

__all__ = ["gateway_env"]
