"""What runs in each Job pod: ``llmbatch-runner plan``, ``run`` (one shard) and ``finalize``.

Modules, in the order a request meets them:
- ``cli``: the entrypoint, flags and env defaults, exit codes (``llmbatch.api.exitcodes``).
- ``plan``: the plan step (validation, duplicates, token counts, chunks of byte ranges).
- ``run``: the shard loop (claim chunks, the in-flight window, commit per chunk, stop handling);
  ``planned``: the plan and input checks a shard and finalize start with.
- ``leases``, ``claims``: chunk leases by conditional writes, and the order chunks are claimed.
- ``source``, ``chunkwork``: the next chunk claimed and read (ranged GETs) in the background;
  an open chunk's lines, resumed lines and finished records.
- ``model_source``: hf://, s3:// (cached per node under a lock) or local weights.
- ``engine``, ``sampling``, ``responses``: vLLM in, OpenAI response bodies out.
- ``records``, ``parts``: result lines and committed parts.
- ``progress``, ``metrics``, ``logs``: what the operator and people watch.
- ``finalize``: the plan's and the chunks' parts to output.jsonl, errors.jsonl, manifest.json.
- ``local``: plan + run + finalize on one machine (``llmbatch run``).
"""
