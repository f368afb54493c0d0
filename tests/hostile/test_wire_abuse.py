"""Hostile bytes on the wire: endless redirects, gzip bombs, huge headers, wrong types.

Each test: one hostile answer, the exact exit code, no traceback, and the peer's request
log proving nothing destructive followed.
"""

from __future__ import annotations

import pytest

from omictl.transport.http import MAX_BODY_BYTES
from tests.hostile.conftest import Hostile
from tests.hostile.peer import Reply, Request, gzip_bomb

pytestmark = pytest.mark.e2e

BOUND_S = 15.0


def _redirect_to_self(request: Request) -> Reply:
    return Reply(status=302, body=b"", headers=[("Location", request.path)])


def test_provider_endless_redirect_not_followed(hostile: Hostile) -> None:
    """A DELETE answered by a redirect to itself: exit 5, exactly one DELETE seen, no unbind."""
    hostile.fake.overrides["delete"] = _redirect_to_self
    res = hostile.decommission()
    assert res.code == 5, res.err
    assert res.json()["error"]["code"] == "protocol_error"
    assert "redirects are not followed" in res.err
    assert hostile.fake.deletes() == 1
    assert hostile.fake.unbinds() == 0


def test_registry_endless_redirect_not_followed(hostile: Hostile) -> None:
    """The registry key GET redirecting to itself: exit 5, exactly one request seen in all."""
    hostile.fake.overrides["info"] = _redirect_to_self
    res = hostile.decommission()
    assert res.code == 5, res.err
    assert len(hostile.fake.peer.requests) == 1
    assert hostile.fake.deletes() == 0


def test_provider_gzip_bomb_capped(hostile: Hostile) -> None:
    """A 64 MiB-inflating gzip receipt (~65 KiB on the wire): exit 5, no unbind."""
    bomb = gzip_bomb(64)
    assert len(bomb) < 128 * 1024
    hostile.fake.overrides["delete"] = lambda _r: Reply(
        body=bomb, headers=[("Content-Encoding", "gzip")]
    )
    res = hostile.decommission()
    assert res.code == 5, res.err
    assert f"decompresses to more than {MAX_BODY_BYTES} bytes" in res.err
    assert res.seconds < BOUND_S
    assert hostile.fake.unbinds() == 0


def test_registry_gzip_bomb_capped(hostile: Hostile) -> None:
    """A gzip bomb as the registry's key answer: exit 5, no DELETE, nothing pinned."""
    bomb = gzip_bomb(64)
    hostile.fake.overrides["info"] = lambda _r: Reply(
        body=bomb, headers=[("Content-Encoding", "gzip")]
    )
    res = hostile.decommission()
    assert res.code == 5, res.err
    assert "decompresses to more than" in res.err
    assert hostile.fake.deletes() == 0
    assert not (hostile.home / "known_registries.json").exists()


def test_stacked_gzip_layers_capped(hostile: Hostile) -> None:
    """Content-Encoding "gzip, gzip" with a bomb inside a bomb: exit 5, nothing revoked."""
    import gzip

    inner = gzip_bomb(64)
    outer = gzip.compress(inner, mtime=0)
    hostile.fake.overrides["delete"] = lambda _r: Reply(
        body=outer, headers=[("Content-Encoding", "gzip, gzip")]
    )
    res = hostile.decommission()
    assert res.code == 5, res.err
    assert "decompresses to more than" in res.err
    assert hostile.fake.unbinds() == 0


#: httpcore refuses a response head over 100 KiB (h11 "Receive buffer too long").
HEAD_CAP = 100 * 1024


def _genuine_receipt(hostile: Hostile) -> dict[str, object]:
    from omictl.core.envelope import sign_envelope

    return sign_envelope(hostile.fake.receipt_data(), hostile.fake.service_signer).to_json()


def test_provider_1mb_header_is_clear_error(hostile: Hostile) -> None:
    """A genuine receipt behind one 1 MB header line: exit 6 (bounded tries), no unbind."""
    receipt = _genuine_receipt(hostile)
    hostile.fake.overrides["delete"] = lambda _r: Reply(
        body=receipt, headers=[("X-Junk", "a" * 1_000_000)]
    )
    res = hostile.decommission()
    assert res.code == 6, res.err
    assert "termination request: cannot get an answer from 127.0.0.1" in res.err
    assert "Receive buffer too long" in res.err
    assert "gave up after 4 tries" in res.err
    assert res.seconds < BOUND_S
    assert hostile.fake.deletes() == 4
    assert hostile.fake.unbinds() == 0


def test_provider_many_headers_is_clear_error(hostile: Hostile) -> None:
    """A genuine receipt behind 20,000 small headers (> 100 KiB): exit 6, no unbind."""
    receipt = _genuine_receipt(hostile)
    headers = [(f"X-H{i:05d}", "v") for i in range(20_000)]
    assert sum(len(n) + len(v) + 4 for n, v in headers) > HEAD_CAP
    hostile.fake.overrides["delete"] = lambda _r: Reply(body=receipt, headers=headers)
    res = hostile.decommission()
    assert res.code == 6, res.err
    assert "Receive buffer too long" in res.err
    assert res.seconds < BOUND_S
    assert hostile.fake.unbinds() == 0


def test_header_under_head_cap_is_parsed(hostile: Hostile) -> None:
    """A genuine receipt behind a 90 KB header (under the 100 KiB cap): accepted, exit 0."""
    receipt = _genuine_receipt(hostile)
    hostile.fake.overrides["delete"] = lambda _r: Reply(
        body=receipt, headers=[("X-Junk", "a" * 90_000)]
    )
    res = hostile.decommission()
    assert res.code == 0, res.err
    assert res.json()["status"] == "REVOKED"
    assert hostile.fake.deletes() == 1


def test_declared_huge_content_length_refused_unread(hostile: Hostile) -> None:
    """A 2xx declaring a 10 GB body: refused before reading, exit 5, no unbind."""
    hostile.fake.overrides["delete"] = lambda _r: Reply(
        raw=b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Length: 10000000000\r\n\r\n{",
        hold=30.0,
    )
    res = hostile.decommission()
    assert res.code == 5, res.err
    assert "over the 1048576-byte limit" in res.err
    assert res.seconds < BOUND_S
    assert hostile.fake.unbinds() == 0


def test_chunked_endless_body_capped(hostile: Hostile) -> None:
    """A chunked 2xx that never ends: cut at 1 MiB, exit 5, no unbind."""
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b" " * 64 * 1024)
    hostile.fake.overrides["delete"] = lambda _r: Reply(
        raw=b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunk * 40,
        hold=30.0,
    )
    res = hostile.decommission()
    assert res.code == 5, res.err
    assert "over the 1048576-byte limit" in res.err
    assert hostile.fake.unbinds() == 0


@pytest.mark.parametrize(
    "content_type",
    [
        "text/html",
        "text/plain",
        "application/javascript",
        "application/jsonp",
        "application/x-www-form-urlencoded",
        "multipart/mixed; boundary=x",
        None,
    ],
)
def test_provider_wrong_content_type(hostile: Hostile, content_type: str | None) -> None:
    """A genuine, valid receipt sent with a non-JSON content type: exit 5, no unbind."""
    receipt = _genuine_receipt(hostile)
    hostile.fake.overrides["delete"] = lambda _r: Reply(body=receipt, content_type=content_type)
    res = hostile.decommission()
    assert res.code == 5, res.err
    assert "not application/json" in res.err
    assert hostile.fake.unbinds() == 0


def test_registry_key_as_html_refused(hostile: Hostile) -> None:
    """The registry's key answer served as text/html (a captive portal): exit 5, nothing pinned."""
    hostile.fake.overrides["info"] = lambda _r: Reply(
        body=b"<html>Please log in</html>", content_type="text/html"
    )
    res = hostile.decommission()
    assert res.code == 5, res.err
    assert "not application/json" in res.err
    assert hostile.fake.deletes() == 0
    assert not (hostile.home / "known_registries.json").exists()


def test_html_error_page_not_dumped(hostile: Hostile) -> None:
    """A 403 HTML page from the provider: exit 5 (a protocol error: PROTOCOL.md section 5
    wants problem+json), a generic message, the body never shown."""
    hostile.fake.overrides["delete"] = lambda _r: Reply(
        status=403, body=b"<html><script>SECRET-PAGE</script></html>", content_type="text/html"
    )
    res = hostile.decommission()
    assert res.code == 5, res.err
    assert "answered HTTP 403 without a problem+json body" in res.err
    assert "SECRET-PAGE" not in res.err + res.out
    assert hostile.fake.unbinds() == 0
