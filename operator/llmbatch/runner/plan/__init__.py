"""The plan step (issue 13): one pass over a batch's input, the immutable plan under
``<output>/plan/`` that shards claim work from (``llmbatch.api.plan`` holds its documents).

Modules:
- ``step``: the driver (``make_plan``), and ``read_plan`` / ``read_chunk`` for its readers.
- ``scan``: physical lines with byte offsets; size and SHA-256 on the way.
- ``dupindex``: the disk-backed custom_id index behind duplicate detection.
- ``counting``: prompt tokens (tokenizer or estimate) and completion budgets per line.
- ``grouping``: prompt-prefix keys and the prefix-grouped feeding order.
- ``chunking``: a segment's lines cut into chunks of byte ranges.
- ``errorparts``: the invalid lines' error records as parts.
"""

from llmbatch.runner.plan.step import PlanConfig, make_plan, read_chunk, read_plan

__all__ = ["PlanConfig", "make_plan", "read_chunk", "read_plan"]
