"""The OpenAI-compatible Files and Batches API (``llmbatch gateway``).

Stateless: uploads live in object storage, batches are BatchJobs labelled with their tenant,
API keys are SHA-256 digests in a Secret and rate-limit counters are ConfigMaps, so any number
of replicas can serve side by side. Where things are:

- ``app``: the FastAPI app; every /v1 route sits behind ``auth.authenticate``.
- ``auth``, ``keys``, ``ratelimit``: bearer keys, tiers and the shared per-key limit.
- ``routes_files``, ``multipart``, ``files``: streamed, validated uploads and file reads.
- ``routes_batches``, ``batches``, ``lookup``, ``informer``: BatchJobs as OpenAI batches.
- ``routes_extras``, ``inline``, ``tokens``: validate, cost estimate, inline input.
- ``errors``, ``bodylimit``, ``observability``: OpenAI error shape, body caps, metrics, logs.
- ``kube``: the gateway's Kubernetes calls over ``llmbatch.kube``; ``config``, ``server``: wiring.
"""
