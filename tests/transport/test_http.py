"""request_json and make_client: redirects, caps, content types, problems, retries, deadline."""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import threading
import zlib
from collections.abc import Iterator

import httpx
import pytest
import respx

from omictl import __version__
from omictl.errors import ExitCode, ProtocolError, RemoteRejected, RemoteUnavailable, UsageError
from omictl.transport.http import (
    MAX_BODY_BYTES,
    USER_AGENT,
    RetryPolicy,
    make_client,
    request_json,
)
from tests.transport.helpers import PROBLEM_CODES, FakeClock, problem

URL = "https://api.example/v1/thing"
JSON = {"Content-Type": "application/json"}


def _get(client: httpx.Client, policy: RetryPolicy, **kwargs: object) -> object:
    return request_json(client, "GET", URL, policy=policy, what="test call", **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- client


def test_client_sends_user_agent(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy
) -> None:
    """Every request carries User-Agent omictl/VERSION and Accept-Encoding identity."""
    route = mock.get(URL).respond(200, json={"ok": True})
    _get(client, policy)
    request = route.calls.last.request
    assert request.headers["user-agent"] == f"omictl/{__version__}" == USER_AGENT
    assert request.headers["accept-encoding"] == "identity"


def test_client_settings() -> None:
    """The factory sets every timeout, no redirects and no environment trust."""
    with make_client(timeout=3.5) as c:
        assert c.timeout == httpx.Timeout(3.5)
        assert c.follow_redirects is False
        assert c.trust_env is False


def test_client_ignores_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTPS_PROXY in the environment does not re-route omictl's requests."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("ALL_PROXY", "http://proxy.invalid:3128")
    with make_client() as c:
        assert c._mounts == {}


def test_success_returns_answer(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy
) -> None:
    """A 200 JSON answer comes back parsed, with one attempt."""
    mock.get(URL).respond(200, json={"a": [1, 2]})
    answer = request_json(client, "GET", URL, policy=policy, what="test call")
    assert (answer.status, answer.body, answer.attempts) == (200, {"a": [1, 2]}, 1)
    assert answer.headers["content-type"] == "application/json"


def test_problem_plus_json_type_accepted_for_2xx(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy
) -> None:
    """A +json media type with a charset parameter is JSON."""
    mock.get(URL).respond(
        200,
        content=b'{"x": 1}',
        headers={"Content-Type": "application/vnd.omi+json; charset=utf-8"},
    )
    assert request_json(client, "GET", URL, policy=policy, what="t").body == {"x": 1}


# --------------------------------------------------------------------------- redirects


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_never_followed(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy, status: int
) -> None:
    """A redirect is a protocol error naming the target host; nothing else is requested."""
    route = mock.route().respond(status, headers={"Location": "https://evil.example/steal"})
    with pytest.raises(ProtocolError) as info:
        request_json(client, "POST", URL, body=lambda: b"{}", policy=policy, what="unbind")
    assert route.call_count == 1
    assert "evil.example" in info.value.message
    assert "redirects are not followed for signed requests" in info.value.message
    assert info.value.exit_code == ExitCode.VERIFICATION


# --------------------------------------------------------------------------- size caps


def test_body_over_cap_rejected(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy
) -> None:
    """A body over 1 MiB is a protocol error."""
    body = b'{"x": "' + b"a" * MAX_BODY_BYTES + b'"}'
    mock.get(URL).respond(200, content=body, headers=JSON)
    with pytest.raises(ProtocolError, match="over the 1048576-byte limit"):
        _get(client, policy)


def test_body_over_cap_without_content_length_rejected(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy
) -> None:
    """A streamed body with no Content-Length is cut off at 1 MiB."""

    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b" " * 65536

    mock.get(URL).mock(side_effect=lambda _r: httpx.Response(200, stream=chunks(), headers=JSON))  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match="over the 1048576-byte limit"):
        _get(client, policy)


def test_body_at_cap_accepted(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy
) -> None:
    """A body of exactly 1 MiB is read."""
    body = b'"' + b"a" * (MAX_BODY_BYTES - 2) + b'"'
    mock.get(URL).respond(200, content=body, headers=JSON)
    assert len(_get(client, policy).body) == MAX_BODY_BYTES - 2  # type: ignore[attr-defined]


def test_gzip_bomb_rejected(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy
) -> None:
    """A small gzip body that inflates past 1 MiB is a protocol error."""
    bomb = gzip.compress(b" " * (8 * MAX_BODY_BYTES), compresslevel=9)
    assert len(bomb) < 20_000
    mock.get(URL).respond(200, content=bomb, headers={**JSON, "Content-Encoding": "gzip"})
    with pytest.raises(ProtocolError, match="decompresses to more than 1048576 bytes"):
        _get(client, policy)


def test_gzip_body_decoded(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy
) -> None:
    """A server that gzips anyway is still understood."""
    mock.get(URL).respond(
        200, content=gzip.compress(b'{"z": 1}'), headers={**JSON, "Content-Encoding": "gzip"}
    )
    assert _get(client, policy).body == {"z": 1}  # type: ignore[attr-defined]


def test_deflate_body_decoded(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy
) -> None:
    """A deflate (zlib) body is understood."""
    mock.get(URL).respond(
        200, content=zlib.compress(b'{"z": 2}'), headers={**JSON, "Content-Encoding": "deflate"}
    )
    assert _get(client, policy).body == {"z": 2}  # type: ignore[attr-defined]


def test_unknown_content_encoding_rejected(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy
) -> None:
    """An encoding omictl cannot bound (br) is a protocol error."""
    mock.get(URL).respond(200, content=b"xx", headers={**JSON, "Content-Encoding": "br"})
    with pytest.raises(ProtocolError, match="Content-Encoding 'br'"):
        _get(client, policy)


def test_truncated_gzip_rejected(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy
) -> None:
    """A gzip stream cut short is a protocol error."""
    mock.get(URL).respond(
        200, content=gzip.compress(b'{"z": 1}')[:-6], headers={**JSON, "Content-Encoding": "gzip"}
    )
    with pytest.raises(ProtocolError, match="truncated or padded gzip body"):
        _get(client, policy)


# --------------------------------------------------------------------------- content


def test_non_json_200_rejected(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy
) -> None:
    """A 200 labelled JSON that is not JSON is a protocol error."""
    mock.get(URL).respond(200, content=b"<html>hi</html>", headers=JSON)
    with pytest.raises(ProtocolError, match="is not valid JSON"):
        _get(client, policy)


def test_wrong_content_type_rejected(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy
) -> None:
    """Valid JSON served as text/html is a protocol error naming the type."""
    mock.get(URL).respond(200, content=b"{}", headers={"Content-Type": "text/html"})
    with pytest.raises(ProtocolError, match="content type 'text/html', not application/json"):
        _get(client, policy)


def test_missing_content_type_rejected(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy
) -> None:
    """A 2xx without Content-Type is a protocol error."""
    mock.get(URL).respond(200, content=b"{}")
    with pytest.raises(ProtocolError, match="content type 'none'"):
        _get(client, policy)


def test_duplicate_members_rejected(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy
) -> None:
    """Duplicate JSON members are refused (two readers, two messages)."""
    mock.get(URL).respond(200, content=b'{"a": 1, "a": 2}', headers=JSON)
    with pytest.raises(ProtocolError, match="duplicate member 'a'"):
        _get(client, policy)


def test_nan_rejected(mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy) -> None:
    """NaN is not JSON."""
    mock.get(URL).respond(200, content=b'{"a": NaN}', headers=JSON)
    with pytest.raises(ProtocolError, match="NaN is not valid JSON"):
        _get(client, policy)


def test_empty_204_rejected(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy
) -> None:
    """A 204 without a JSON body is a protocol error."""
    mock.get(URL).respond(204)
    with pytest.raises(ProtocolError):
        _get(client, policy)


# --------------------------------------------------------------------------- problems


@pytest.mark.parametrize(("code", "status"), PROBLEM_CODES, ids=[c for c, _ in PROBLEM_CODES])
def test_problem_maps_to_remote_rejected(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy, code: str, status: int
) -> None:
    """Every PROTOCOL.md section 5 code becomes RemoteRejected, exit 4, title and detail shown."""
    mock.get(URL).mock(return_value=problem(code, status))
    with pytest.raises(RemoteRejected) as info:
        _get(client, policy)
    exc = info.value
    assert (exc.code, exc.status, exc.exit_code) == (code, status, ExitCode.REJECTED)
    assert exc.problem_type == f"urn:omi:error:{code}"
    assert f"Title of {code}" in exc.message
    assert f"detail of {code}" in exc.message
    assert exc.hint
    assert exc.problem["detail"] == f"detail of {code}"


def test_stale_request_hint_mentions_clock(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy
) -> None:
    """stale_request tells the user to check the clock."""
    mock.get(URL).mock(return_value=problem("stale_request", 401))
    with pytest.raises(RemoteRejected) as info:
        _get(client, policy)
    assert info.value.hint is not None
    assert info.value.hint.startswith("check the system clock")


def test_problem_message_exact(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy
) -> None:
    """The rejection message names the call, host, status, code, title and detail."""
    mock.get(URL).mock(return_value=problem("unknown_app", 404))
    with pytest.raises(RemoteRejected) as info:
        _get(client, policy)
    assert info.value.message == (
        "test call was rejected by api.example (HTTP 404 unknown_app): "
        "Title of unknown_app: detail of unknown_app"
    )


def test_problem_control_characters_escaped(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy
) -> None:
    """ANSI escapes and newlines in a problem's title never reach the terminal raw."""
    body = {"type": "urn:omi:error:unknown_app", "title": "\x1b[2Jgone\nfake", "detail": "d"}
    mock.get(URL).respond(404, json=body, headers={"Content-Type": "application/problem+json"})
    with pytest.raises(RemoteRejected) as info:
        _get(client, policy)
    assert "\x1b" not in info.value.message
    assert "\n" not in info.value.message
    assert "\\u001b[2Jgone\\u000afake" in info.value.message


def test_html_4xx_is_generic_rejection(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy
) -> None:
    """A 4xx with an HTML body is rejected generically, without dumping the body."""
    mock.get(URL).respond(
        403,
        content=b"<html><h1>Forbidden secret page</h1></html>",
        headers={"Content-Type": "text/html"},
    )
    with pytest.raises(ProtocolError) as info:
        _get(client, policy)
    exc = info.value
    assert (exc.code, exc.details["status"], exc.exit_code) == (
        "protocol_error",
        403,
        ExitCode.VERIFICATION,
    )
    assert exc.message == "test call: api.example answered HTTP 403 without a problem+json body"
    assert "secret" not in exc.message


@pytest.mark.parametrize("status", [400, 401, 404, 409, 422])
def test_4xx_never_retried(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy, clock: FakeClock, status: int
) -> None:
    """A 4xx other than 429 is final: one call, no sleep."""
    route = mock.get(URL).mock(return_value=problem("malformed_request", status))
    with pytest.raises(RemoteRejected):
        _get(client, policy)
    assert route.call_count == 1
    assert clock.sleeps == []


def test_500_not_retried(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy, clock: FakeClock
) -> None:
    """A 500 is RemoteUnavailable at once (only 502/503/504 are retried)."""
    route = mock.get(URL).respond(500, json={"type": "about:blank", "title": "Boom"})
    with pytest.raises(RemoteUnavailable) as info:
        _get(client, policy)
    assert route.call_count == 1
    assert info.value.message == "test call: api.example failed (HTTP 500): Boom"
    assert info.value.exit_code == ExitCode.UNAVAILABLE


# --------------------------------------------------------------------------- retries


def test_503_then_200_fresh_body_each_try(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy, clock: FakeClock
) -> None:
    """A 503 is retried after backoff, and the body factory runs again for the retry."""
    route = mock.post(URL).mock(
        side_effect=[httpx.Response(503), httpx.Response(200, json={"ok": 1})]
    )
    made: list[bytes] = []

    def body() -> bytes:
        made.append(json.dumps({"n": len(made)}).encode())
        return made[-1]

    answer = request_json(client, "POST", URL, body=body, policy=policy, what="t")
    assert answer.attempts == 2
    assert [c.request.content for c in route.calls] == [b'{"n": 0}', b'{"n": 1}']
    assert [c.request.headers["content-type"] for c in route.calls] == ["application/json"] * 2
    assert clock.sleeps == [0.5]


def test_503_forever_gives_up(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy, clock: FakeClock
) -> None:
    """503 on every try: RemoteUnavailable after `attempts` tries, exponential waits."""
    route = mock.get(URL).respond(503)
    with pytest.raises(RemoteUnavailable) as info:
        _get(client, policy)
    assert route.call_count == 4
    assert clock.sleeps == [0.5, 1.0, 2.0]
    assert info.value.message == (
        "test call: api.example failed (HTTP 503) (gave up after 4 tries)"
    )
    assert info.value.exit_code == ExitCode.UNAVAILABLE


@pytest.mark.parametrize("status", [502, 504])
def test_gateway_errors_retried(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy, status: int
) -> None:
    """502 and 504 are retried like 503."""
    mock.get(URL).mock(side_effect=[httpx.Response(status), httpx.Response(200, json=[])])
    assert _get(client, policy).attempts == 2  # type: ignore[attr-defined]


def test_backoff_capped_at_max_delay(
    mock: respx.MockRouter, client: httpx.Client, clock: FakeClock
) -> None:
    """Waits double up to max_delay, never beyond."""
    policy = RetryPolicy(
        attempts=7,
        base_delay=1.0,
        max_delay=5.0,
        sleep=clock.sleep,
        jitter=lambda: 1.0,
        clock=clock,
    )
    mock.get(URL).respond(503)
    with pytest.raises(RemoteUnavailable):
        request_json(client, "GET", URL, policy=policy, what="t", deadline=1000)
    assert clock.sleeps == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_full_jitter_scales_wait(
    mock: respx.MockRouter, client: httpx.Client, clock: FakeClock
) -> None:
    """The wait is jitter() times the exponential ceiling."""
    policy = RetryPolicy(attempts=3, sleep=clock.sleep, jitter=lambda: 0.25, clock=clock)
    mock.get(URL).respond(503)
    with pytest.raises(RemoteUnavailable):
        request_json(client, "GET", URL, policy=policy, what="t")
    assert clock.sleeps == [0.125, 0.25]


def test_429_honours_retry_after(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy, clock: FakeClock
) -> None:
    """429 is retried after the server's Retry-After seconds."""
    mock.get(URL).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "3"}),
            httpx.Response(200, json={"ok": True}),
        ]
    )
    assert _get(client, policy).attempts == 2  # type: ignore[attr-defined]
    assert clock.sleeps == [3.0]


def test_429_retry_after_capped(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy, clock: FakeClock
) -> None:
    """A Retry-After longer than max_delay waits max_delay."""
    mock.get(URL).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "3600"}),
            httpx.Response(200, json={}),
        ]
    )
    _get(client, policy, deadline=100)
    assert clock.sleeps == [8.0]


def test_429_retry_after_http_date(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy, clock: FakeClock
) -> None:
    """A Retry-After date in the past (or 0) cannot cut the backoff short: the server may
    slow retries down, never make them a tight loop (PROTOCOL.md section 6)."""
    mock.get(URL).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),
            httpx.Response(200, json={}),
        ]
    )
    _get(client, policy)
    assert clock.sleeps == [0.5]


@pytest.mark.parametrize(
    ("value", "waited"),
    [
        ("9" * 5000, 0.125),  # over Python's int-parsing digit limit: ignored, not a crash
        ("9" * 40, 8.0),  # a huge number of seconds: the policy's cap
        ("00000000000000000002", 2.0),  # leading zeros are still a small number
        ("\u00b2", 0.125),  # a superscript two: str.isdigit() says yes, int() says no
        ("x" * 100, 0.125),  # not a number, not a date: the backoff applies
    ],
)
def test_hostile_retry_after_never_escapes(
    mock: respx.MockRouter,
    client: httpx.Client,
    clock: FakeClock,
    value: str,
    waited: float,
) -> None:
    """A Retry-After a peer chose to break the parser is a wait, never a crash (exit 1)."""
    policy = RetryPolicy(attempts=2, sleep=clock.sleep, jitter=lambda: 0.25, clock=clock)
    mock.get(URL).mock(
        side_effect=[
            httpx.Response(503, headers=[(b"Retry-After", value.encode("latin-1"))]),
            httpx.Response(200, json={}),
        ]
    )
    request_json(client, "GET", URL, policy=policy, what="t", deadline=100)
    assert clock.sleeps == [waited]


def test_429_forever_is_unavailable(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy
) -> None:
    """Rate limited on every try: RemoteUnavailable with code rate_limited."""
    route = mock.get(URL).respond(429)
    with pytest.raises(RemoteUnavailable) as info:
        _get(client, policy)
    assert route.call_count == 4
    assert info.value.code == "rate_limited"


def test_connect_error_retried_then_unavailable(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy, clock: FakeClock
) -> None:
    """A connection error is retried, then RemoteUnavailable names the host."""
    route = mock.get(URL).mock(side_effect=httpx.ConnectError("connection refused"))
    with pytest.raises(RemoteUnavailable) as info:
        _get(client, policy)
    assert route.call_count == 4
    assert info.value.message == (
        "test call: cannot get an answer from api.example: connection failed "
        "(connection refused) (gave up after 4 tries)"
    )
    assert isinstance(info.value.__cause__, httpx.ConnectError)


@pytest.mark.parametrize(
    ("failures", "never_sent"),
    [
        ([httpx.ConnectError("refused")] * 4, True),
        ([httpx.ConnectTimeout("slow")] * 4, True),
        ([httpx.ReadTimeout("read")] + [httpx.ConnectError("refused")] * 3, False),
    ],
    ids=["refused", "connect-timeout", "one-read-timeout"],
)
def test_a_request_that_never_connected_says_so(
    mock: respx.MockRouter,
    client: httpx.Client,
    policy: RetryPolicy,
    failures: list[Exception],
    never_sent: bool,
) -> None:
    """When no try got past connecting, the error says the request was never sent
    (details.never_sent), so a DELETE that could not connect is not reported as one that
    may have wiped the tenant; one try that may have been sent is enough to say nothing."""
    mock.get(URL).mock(side_effect=failures)
    with pytest.raises(RemoteUnavailable) as info:
        _get(client, policy)
    assert info.value.details.get("never_sent", False) is never_sent


def test_a_tls_error_after_the_handshake_does_not_say_never_sent(policy: RetryPolicy) -> None:
    """An SSL error while reading the answer (the request went out): tls_error, but not
    never_sent, so a DELETE that may have arrived is still said to have maybe arrived."""
    import ssl

    def handler(request: httpx.Request) -> httpx.Response:
        failure = httpx.ReadError("bad record")
        failure.__cause__ = ssl.SSLError("decryption failed or bad record mac")
        raise failure  # as httpcore reports an SSL error while reading (no respx: it
        # re-chains side effects)

    with (
        httpx.Client(transport=httpx.MockTransport(handler)) as client,
        pytest.raises(RemoteUnavailable) as info,
    ):
        _get(client, policy)
    assert info.value.code == "tls_error"
    assert "never_sent" not in info.value.details


def test_connect_error_then_success(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy
) -> None:
    """A connection error followed by an answer succeeds on try 2."""
    mock.get(URL).mock(
        side_effect=[httpx.ConnectError("refused"), httpx.Response(200, json={"a": 1})]
    )
    assert _get(client, policy).attempts == 2  # type: ignore[attr-defined]


def test_read_timeout_retried(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy
) -> None:
    """A read timeout of a signed DELETE is retried (the re-send is safe, see docs)."""
    route = mock.delete(URL).mock(
        side_effect=[httpx.ReadTimeout("slow"), httpx.Response(200, json={"r": 1})]
    )
    answer = request_json(client, "DELETE", URL, body=lambda: b"{}", policy=policy, what="t")
    assert (answer.attempts, route.call_count) == (2, 2)


def test_tls_failure_not_retried(policy: RetryPolicy) -> None:
    """A TLS handshake failure (real socket on 127.0.0.1) fails at once with tls_error."""
    accepted: list[int] = []
    stop = threading.Event()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.05)

    def serve() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                conn, _ = server.accept()
                accepted.append(1)
                with conn:
                    conn.recv(1024)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"https://127.0.0.1:{server.getsockname()[1]}/v1/registry"
    try:
        with make_client(timeout=5.0) as c, pytest.raises(RemoteUnavailable) as info:
            request_json(c, "GET", url, policy=policy, what="test call")
    finally:
        stop.set()
        thread.join(5)
        server.close()
    assert info.value.code == "tls_error"
    assert info.value.message.startswith("test call: TLS with 127.0.0.1:")
    assert accepted == [1]
    assert info.value.details["never_sent"] is True  # no handshake, no request


# --------------------------------------------------------------------------- deadline


def test_slow_trickle_hits_deadline(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy, clock: FakeClock
) -> None:
    """A server trickling bytes is cut off at the whole-call deadline."""

    def trickle() -> Iterator[bytes]:
        for _ in range(100):
            clock.now += 4.0
            yield b" "

    route = mock.get(URL).mock(
        side_effect=lambda _r: httpx.Response(200, stream=trickle(), headers=JSON)  # type: ignore[arg-type]
    )
    with pytest.raises(RemoteUnavailable) as info:
        _get(client, policy, deadline=30.0)
    assert info.value.code == "deadline_exceeded"
    assert info.value.message == "test call: api.example did not finish answering within 30 s"
    assert route.call_count == 1


def test_deadline_stops_retries(
    mock: respx.MockRouter, client: httpx.Client, clock: FakeClock
) -> None:
    """No wait is started that would end past the deadline."""
    policy = RetryPolicy(attempts=10, sleep=clock.sleep, jitter=lambda: 1.0, clock=clock)
    route = mock.get(URL).respond(503)
    with pytest.raises(RemoteUnavailable, match=r"gave up after 3 tries"):
        request_json(client, "GET", URL, policy=policy, what="t", deadline=2.0)
    assert route.call_count == 3
    assert clock.sleeps == [0.5, 1.0]


def test_default_deadline_is_factor_of_timeout(mock: respx.MockRouter, clock: FakeClock) -> None:
    """Without a deadline the call may take 6 x the read timeout."""

    def trickle() -> Iterator[bytes]:
        for _ in range(100):
            clock.now += 1.0
            yield b" "

    policy = RetryPolicy(sleep=clock.sleep, clock=clock)
    mock.get(URL).mock(side_effect=lambda _r: httpx.Response(200, stream=trickle(), headers=JSON))  # type: ignore[arg-type]
    with make_client(timeout=2.0) as c, pytest.raises(RemoteUnavailable, match="within 12 s"):
        request_json(c, "GET", URL, policy=policy, what="test call")


def test_slow_failures_stop_at_deadline(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy, clock: FakeClock
) -> None:
    """A failed try that used up the deadline is not followed by another."""

    def slow_refusal(_request: httpx.Request) -> httpx.Response:
        clock.now += 100.0
        raise httpx.ConnectTimeout("timed out")

    route = mock.get(URL).mock(side_effect=slow_refusal)
    with pytest.raises(RemoteUnavailable) as info:
        _get(client, policy, deadline=60.0)
    assert route.call_count == 1
    assert info.value.message == (
        "test call: cannot get an answer from api.example: connecting timed out (timed out) "
        "(gave up after 1 try)"
    )


def test_bad_timeout_is_usage_error() -> None:
    """A non-positive timeout is refused by the client factory."""
    with pytest.raises(UsageError, match="timeout must be a positive number"):
        make_client(timeout=0)
