"""Webhooks: Standard Webhooks signing and verification, target URL checks, OpenAI's batch event
payloads and the delivery state with its backoff schedule.

A leaf beside ``api``: the gateway (batches created through it, endpoints registered per tenant)
and the controller (BatchJobs with ``spec.notify``) both send through it, and neither imports
the other. Only the standard library, httpx and ``llmbatch.api`` are used here.
"""
