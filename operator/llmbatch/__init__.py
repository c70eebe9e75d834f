"""llm-batch-operator: offline LLM batch inference on Kubernetes."""

__version__ = "0.1.0"
