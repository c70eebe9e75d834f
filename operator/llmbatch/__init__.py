"""llm-batch-operator: offline LLM batch inference on Kubernetes."""

__version__ = "0.1.0"

GROUP = "llmbatch.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "BatchJob"
PLURAL = "batchjobs"
SINGULAR = "batchjob"
