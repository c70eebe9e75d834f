"""Webhook target URLs: scheme and host checked, every resolved address checked; loopback,
link-local, unspecified and private targets refused unless allowed explicitly."""

from __future__ import annotations

import pytest

from llmbatch.notify.urls import UrlRefused, check_url


def fixed(*addresses: str):  # type: ignore[no-untyped-def]
    def resolver(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolver


def test_public_https_target_passes() -> None:
    url = "https://hooks.example.com/openai"
    assert check_url(url, resolver=fixed("93.184.216.34")) == url


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("10.0.0.7", "private"),
        ("192.168.1.2", "private"),
        ("::ffff:127.0.0.1", "loopback"),
    ],
)
def test_internal_addresses_are_refused(address: str, reason: str) -> None:
    with pytest.raises(UrlRefused, match=reason):
        check_url("https://hooks.example.com/x", resolver=fixed(address))


def test_one_bad_address_among_good_ones_is_enough_to_refuse() -> None:
    with pytest.raises(UrlRefused, match="loopback"):
        check_url("https://h.example.com/", resolver=fixed("93.184.216.34", "127.0.0.1"))


def test_allow_private_targets_lets_a_local_receiver_through() -> None:
    assert check_url("http://127.0.0.1:8080/hooks", allow_private=True)


def test_real_resolution_of_localhost_is_refused() -> None:
    with pytest.raises(UrlRefused, match="loopback"):
        check_url("http://localhost:9/hooks")


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/x", "file:///etc/passwd", "https:///nohost", "http://example.com:99999/"],
)
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(UrlRefused):
        check_url(url, allow_private=True)
