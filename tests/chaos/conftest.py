"""Fixtures of the chaos suite. The gateway fixture is the gateway tests' own (uvicorn in a
thread over moto S3 and an in-memory Kubernetes API), reused so both suites test one setup."""

from tests.gateway.conftest import gateway_env

__all__ = ["gateway_env"]
