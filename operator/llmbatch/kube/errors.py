"""The one error of the Kubernetes client: what the API server answered (status, message,
Status reason, the pause it asked for), or why no request could be made (status 0)."""

from __future__ import annotations

import httpx

from llmbatch.kube.retry import parse_retry_after

# A body that is not a Status object is quoted this far in the message.
_MAX_MESSAGE = 500


class KubeError(Exception):
    """A call failed. ``status`` is the HTTP status, or 0 when there was no answer to read
    (no configuration, an unreadable kubeconfig)."""

    def __init__(
        self,
        status: int,
        message: str,
        retry_after: float | None = None,
        *,
        reason: str | None = None,
    ) -> None:
        super().__init__(f"Kubernetes API answered {status}: {message}" if status else message)
        self.status = status
        self.message = message
        # The Status object's reason (NotFound, AlreadyExists, Conflict, Forbidden, ...).
        self.reason = reason
        # Seconds the server asked us to wait (429, or a 5xx with Retry-After); None otherwise.
        self.retry_after = retry_after

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        """409: the object already exists, or its resourceVersion changed since it was read."""
        return self.status == 409


class NotFound(KubeError):
    """404, so that ``except NotFound`` reads as what it means."""


class Conflict(KubeError):
    """409: the object already exists, or its resourceVersion changed since it was read."""


def error_of(response: httpx.Response) -> KubeError:
    """The error an answer of status 400 or more stands for (its body must have been read)."""
    status = response.status_code
    message, reason = response.text[:_MAX_MESSAGE], None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        message = str(body.get("message", message))[:_MAX_MESSAGE]
        reason = str(body["reason"]) if body.get("reason") else None
    kind = {404: NotFound, 409: Conflict}.get(status, KubeError)
    retry_after = parse_retry_after(status, response.headers.get("Retry-After"))
    return kind(status, message, retry_after, reason=reason)
