"""check_url and normalize_url: PROTOCOL.md section 6 URL rules."""

from __future__ import annotations

import pytest

from omictl.errors import ExitCode, ProtocolError, UsageError
from omictl.transport.http import check_url
from omictl.transport.urls import is_loopback_host, normalize_url


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("https://registry.example", "https://registry.example"),
        ("https://registry.example/", "https://registry.example"),
        ("HTTPS://Registry.EXAMPLE:443/", "https://registry.example"),
        ("https://registry.example:8443/base/", "https://registry.example:8443/base"),
        ("https://registry.example/Base/Path", "https://registry.example/Base/Path"),
        ("http://127.0.0.1:8470/", "http://127.0.0.1:8470"),
        ("http://localhost:80", "http://localhost"),
        ("http://[::1]:8470", "http://[::1]:8470"),
        ("http://127.8.9.10", "http://127.8.9.10"),
        ("https://registry.example./v1/", "https://registry.example/v1"),  # one pin, not two
    ],
)
def test_accepted_urls_are_normalized(given: str, normal: str) -> None:
    """https anywhere and http to loopback are accepted, in normal form."""
    assert check_url(given) == normal


@pytest.mark.parametrize(
    ("given", "fragment"),
    [
        ("", "is empty"),
        ("registry.example", "is not an https:// URL"),
        ("ftp://registry.example", "is not an https:// URL"),
        ("https:registry.example", "is not an https:// URL"),
        ("https://user:pw@registry.example", "must not contain user info"),
        ("https://", "has no host"),
        ("https:///path", "has no host"),
        ("https://registry.example/?x=1", "must not have a query"),
        ("https://registry.example/#frag", "must not have a query"),
        ("https://registry.example:99999", "has an invalid port"),
        ("https://registry.example/a b", "whitespace or control characters"),
        ("https://registry.example/\x1b", "whitespace or control characters"),
        ("https://registry.example/./", "path segments"),
        ("https://registry.example/a/../b", "path segments"),
        ("https://registry.example/..", "path segments"),
        ("https://./", "has no host"),
    ],
)
def test_malformed_urls_refused(given: str, fragment: str) -> None:
    """Malformed URLs are usage errors (exit 2) saying what is wrong."""
    with pytest.raises(UsageError, match=fragment) as info:
        check_url(given, what="registry URL")
    assert info.value.exit_code == ExitCode.USAGE


def test_missing_scheme_hint() -> None:
    """A bare host name suggests the https:// URL."""
    with pytest.raises(UsageError) as info:
        check_url("registry.example/")
    assert info.value.hint == "did you mean https://registry.example?"


def test_plain_http_to_remote_host_refused() -> None:
    """http:// to a non-loopback host is refused without --insecure (exit 2)."""
    with pytest.raises(UsageError) as info:
        check_url("http://registry.example", what="registry URL")
    assert info.value.message == (
        "refusing plain http:// to registry.example for the registry URL: "
        "only loopback hosts may be reached without TLS"
    )
    assert info.value.hint is not None
    assert "--insecure" in info.value.hint


def test_plain_http_allowed_with_insecure() -> None:
    """--insecure allows http:// to any host."""
    assert check_url("http://registry.example/", insecure=True) == "http://registry.example"


def test_custom_error_for_malformed() -> None:
    """The caller may choose the error type for malformed URLs (a registry's bad data)."""
    with pytest.raises(ProtocolError):
        check_url("ftp://x.example", error=ProtocolError)


def test_custom_error_keeps_usage_for_insecure() -> None:
    """Plain http is a usage error whatever the malformed-URL error type."""
    with pytest.raises(UsageError) as info:
        check_url("http://x.example", error=ProtocolError)
    assert type(info.value) is UsageError


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST.", True),
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("128.0.0.1", False),
        ("localhost.evil.example", False),
        ("0.0.0.0", False),
        ("::", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    """Only localhost, 127.0.0.0/8 and ::1 count as loopback."""
    assert is_loopback_host(host) is loopback


def test_normalize_keeps_http_remote() -> None:
    """normalize_url (used by pins) checks shape, not the http policy."""
    assert normalize_url("HTTP://Reg.Example:80/") == "http://reg.example"
