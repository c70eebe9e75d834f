"""The sandbox's kubelet: pods run as local processes (see :mod:`.kubelet`)."""

from llmbatch_sandbox.kubelet.kubelet import KILL_ANNOTATION, PREEMPT_ANNOTATION, Kubelet

__all__ = ["KILL_ANNOTATION", "PREEMPT_ANNOTATION", "Kubelet"]
