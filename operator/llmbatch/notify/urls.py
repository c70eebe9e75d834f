"""Which URLs a webhook may target.

http or https only, with a host. The host is resolved and every address it resolves to is
checked: loopback, link-local (cloud metadata at 169.254.169.254), unspecified, multicast,
reserved and private addresses are refused, so a tenant cannot make the gateway or the operator
call into the cluster or the node. ``allow_private`` lifts the address rule (a receiver inside
the cluster, or the tests' receiver on 127.0.0.1); operators turn it on explicitly.

The check runs at registration and again before every delivery (DNS may change in between).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

Resolver = Callable[[str, int], list[str]]


class UrlRefused(ValueError):
    """The URL is not an allowed webhook target; the message says why."""


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (blocking)."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise UrlRefused(f"the host {host!r} does not resolve: {exc}") from exc
    return sorted({str(info[4][0]) for info in infos})


def _refusal(address: str) -> str | None:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for name in ("loopback", "link_local", "unspecified", "multicast", "reserved", "private"):
        if getattr(ip, f"is_{name}"):
            return name.replace("_", "-")
    return None


def check_url(url: str, *, allow_private: bool = False, resolver: Resolver = resolve) -> str:
    """Return the URL when it may be called; raise UrlRefused naming the reason."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UrlRefused(f"a webhook URL is http:// or https://, not {url[:40]!r}")
    if not parts.hostname:
        raise UrlRefused("the webhook URL has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UrlRefused(f"the webhook URL has a bad port: {exc}") from exc
    if allow_private:
        return url
    for address in resolver(parts.hostname, port):
        reason = _refusal(address)
        if reason is not None:
            raise UrlRefused(
                f"the webhook host {parts.hostname!r} resolves to the {reason} address "
                f"{address}; such targets need webhooks.allowPrivateTargets"
            )
    return url
