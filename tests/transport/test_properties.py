"""Property: whatever a server answers, request_json raises only OmictlError."""

from __future__ import annotations

import gzip
import json
import zlib

import httpx
import pytest
import respx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omictl.errors import OmictlError
from omictl.transport.http import RetryPolicy, make_client, request_json

URL = "https://fuzz.example/v1/x"
#: One client for every example: building the TLS context each time is slow.
CLIENT = make_client(timeout=1.0)

CONTENT_TYPES = st.sampled_from(
    [
        "",
        "application/json",
        "application/problem+json",
        "application/json; charset=utf-8",
        "application/vnd.x+json",
        "text/html",
        "text/plain",
        "application/octet-stream",
        "applic\u00e9tion/json",
    ]
)
ENCODINGS = st.sampled_from(["", "identity", "gzip", "deflate", "br", "gzip, gzip", "x-unknown"])
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


def _encode(body: bytes, encoding: str, compress: bool) -> bytes:
    if not compress:
        return body
    if encoding.startswith("gzip"):
        return gzip.compress(body)
    if encoding == "deflate":
        return zlib.compress(body)
    return body


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    status=st.integers(min_value=100, max_value=599),
    content_type=CONTENT_TYPES,
    encoding=ENCODINGS,
    compress=st.booleans(),
    body=st.one_of(
        st.binary(max_size=300),
        JSONISH.map(lambda v: repr(v).encode()),
        st.builds(
            lambda t, title, detail: json.dumps(
                {"type": t, "title": title, "detail": detail}
            ).encode(),
            st.text(max_size=30) | st.just("urn:omi:error:already_revoked"),
            st.text(max_size=30),
            st.text(max_size=30),
        ),
    ),
    retry_after=st.one_of(st.none(), st.text(max_size=30)),
    location=st.one_of(st.none(), st.text(max_size=30)),
)
def test_request_json_raises_only_omictl_errors(
    status: int,
    content_type: str,
    encoding: str,
    compress: bool,
    body: bytes,
    retry_after: str | None,
    location: str | None,
) -> None:
    """Arbitrary status, headers and bytes give an Answer or an OmictlError, nothing else."""
    headers: list[tuple[str, str]] = []
    if content_type:
        headers.append(("Content-Type", content_type))
    if encoding:
        headers.append(("Content-Encoding", encoding))
    if retry_after is not None:
        headers.append(("Retry-After", retry_after))
    if location is not None:
        headers.append(("Location", location))
    encoded_headers = [(k.encode(), v.encode("utf-8")) for k, v in headers]
    content = _encode(body, encoding, compress)
    policy = RetryPolicy(attempts=2, sleep=lambda _s: None, jitter=lambda: 0.0)
    with respx.mock() as mock:
        mock.route().mock(
            side_effect=lambda _r: httpx.Response(status, headers=encoded_headers, content=content)
        )
        try:
            answer = request_json(
                CLIENT, "POST", URL, body=lambda: b"{}", policy=policy, what="fuzz"
            )
        except OmictlError:
            return
    assert 200 <= answer.status < 300


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("x"),
        httpx.ReadError("x"),
        httpx.WriteError("x"),
        httpx.ConnectTimeout("x"),
        httpx.ReadTimeout("x"),
        httpx.WriteTimeout("x"),
        httpx.PoolTimeout("x"),
        httpx.RemoteProtocolError("x"),
        httpx.LocalProtocolError("x"),
        httpx.ProxyError("x"),
        httpx.UnsupportedProtocol("x"),
        httpx.DecodingError("x"),
        httpx.TooManyRedirects("x"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_every_httpx_error_translated(exc: Exception) -> None:
    """Every httpx exception leaves as an OmictlError with the httpx error as its cause."""
    policy = RetryPolicy(attempts=2, sleep=lambda _s: None, jitter=lambda: 0.0)
    with respx.mock() as mock, make_client(timeout=1.0) as client:
        mock.route().mock(side_effect=exc)
        with pytest.raises(OmictlError) as info:
            request_json(client, "GET", URL, policy=policy, what="fuzz")
    assert isinstance(info.value.__cause__, httpx.HTTPError)
