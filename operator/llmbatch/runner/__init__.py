"""What runs in each Job pod: ``llmbatch-runner run`` (one shard) and ``finalize``.

Modules, in the order a request meets them:
- ``cli``: the entrypoint, flags and env defaults, exit codes (``llmbatch.api.exitcodes``).
- ``run``: the shard loop (input streaming, validation, the in-flight window, stop handling).
- ``sharding``: which shard owns a line (stable hash of its custom_id).
- ``model_source``: hf://, s3:// (cached per node under a lock) or local weights.
- ``engine``, ``sampling``, ``responses``: vLLM in, OpenAI response bodies out.
- ``records``, ``parts``: result lines, the local spool, committed parts, recovery.
- ``progress``, ``metrics``, ``logs``: what the operator and people watch.
- ``finalize``: parts to output.jsonl, errors.jsonl and manifest.json.
- ``local``: run + finalize on one machine (``llmbatch run``).
"""
