"""Access and identity reviews (``kubectl auth can-i``, ``kubectl auth whoami``). The
emulator has no authentication or authorization: every answer is "allowed"."""

from __future__ import annotations

from typing import Any

from llmbatch_sandbox.apiserver.errors import bad_request
from llmbatch_sandbox.apiserver.resources import ResourceType

JSON = dict[str, Any]
USER = {"username": "sandbox-admin", "groups": ["system:masters", "system:authenticated"]}


def review(rt: ResourceType, body: Any) -> JSON:
    if not isinstance(body, dict):
        raise bad_request("a review must be an object")
    out: JSON = {
        "kind": rt.kind,
        "apiVersion": rt.api_version,
        "metadata": {"creationTimestamp": None},
        "spec": body.get("spec") or {},
    }
    if rt.plural == "selfsubjectaccessreviews":
        out["status"] = {"allowed": True, "reason": "the sandbox authorizes every request"}
    elif rt.plural == "selfsubjectrulesreviews":
        out["status"] = {
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": False,
        }
    else:
        out["status"] = {"userInfo": USER}
    return out
