"""The one HTTP client of omictl and the request loop every call goes through.

What this module guarantees (PROTOCOL.md sections 5 and 6):

* one client factory (:func:`make_client`): timeouts on every phase, TLS always verified,
  redirects never followed, no proxies or credentials taken from the environment;
* :func:`request_json`: bounded retries with full-jitter backoff, only on connection
  failures, 429 and 502/503/504, with a freshly signed body for every try; answers capped
  at :data:`MAX_BODY_BYTES` *decoded* bytes and bounded by a wall-clock deadline;
* every failure leaves as an :class:`~omictl.errors.OmictlError` (``raise ... from``):
  :class:`~omictl.errors.RemoteRejected` (exit 4) for a problem+json 4xx,
  :class:`~omictl.errors.ProtocolError` (exit 5) for an answer that breaks the contract
  (a 4xx without a problem+json body included),
  :class:`~omictl.errors.RemoteUnavailable` (exit 6) for timeouts, connection errors and
  5xx after retries.
"""

from __future__ import annotations

import email.utils
import math
import os
import random
import ssl
import time
import urllib.parse
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpcore
import httpx

from omictl import __version__
from omictl.core.envelope import parse_json
from omictl.core.messages import PROBLEM_PREFIX, Problem, parse_problem
from omictl.errors import (
    OmictlError,
    ProtocolError,
    RemoteRejected,
    RemoteUnavailable,
    UsageError,
    inert,
)
from omictl.transport.urls import check_url, host_of, is_loopback_host

__all__ = [
    "DEADLINE_FACTOR",
    "MAX_BODY_BYTES",
    "RETRY_STATUSES",
    "USER_AGENT",
    "Answer",
    "RetryPolicy",
    "check_url",
    "make_client",
    "printable",
    "request_json",
]

USER_AGENT = f"omictl/{__version__}"
#: Largest answer omictl reads, after content decoding (PROTOCOL.md section 5).
MAX_BODY_BYTES = 1024 * 1024
#: HTTP statuses that are retried (PROTOCOL.md section 6).
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: Without an explicit ``deadline``, one request_json call (every try and every wait
#: included) may take this many times the client's read timeout.
DEADLINE_FACTOR = 6
_TEXT_LIMIT = 300

#: What to tell the user for each PROTOCOL.md section 5 code.
PROBLEM_HINTS: Mapping[str, str] = {
    "malformed_request": "the server could not read omictl's request; check that both speak "
    "OMI protocol 1.0, and report it if they do",
    "unsupported_version": "the server speaks another protocol version than omictl (1.0); "
    "upgrade omictl or ask the operator",
    "invalid_signature": "the request was not signed by the key the registry holds for this "
    "app; check --key is the app's master key (omictl keys show NAME)",
    "stale_request": "check the system clock: it must be within 300 s of the server's "
    "(enable NTP), then re-run",
    "replayed_nonce": "the server saw this nonce before; re-run the command, every run signs "
    "afresh",
    "unknown_app": "check the AppID and the registry URL (--registry)",
    "unknown_service": "check the service id; `omictl status APP_ID` lists the bindings",
    "already_revoked": "the binding is already revoked; nothing more to do",
    "invalid_receipt": "the registry did not accept the provider's termination receipt; "
    "keep it for inspection, or revoke without one (--skip-provider)",
}


# --------------------------------------------------------------------------- client


def _ssl_context() -> ssl.SSLContext:
    # trust_env=False also stops httpx from reading SSL_CERT_FILE/SSL_CERT_DIR; honour
    # them here on purpose: adding a CA is an explicit user choice, and verification
    # stays on (hostname and chain).
    cafile = os.environ.get("SSL_CERT_FILE") or None
    capath = os.environ.get("SSL_CERT_DIR") or None
    if cafile or capath:
        try:
            return ssl.create_default_context(cafile=cafile, capath=capath)
        except (OSError, ssl.SSLError) as exc:
            raise OmictlError(
                f"cannot load CA certificates from SSL_CERT_FILE/SSL_CERT_DIR: {exc}",
                hint="fix or unset SSL_CERT_FILE and SSL_CERT_DIR",
                code="tls_config",
            ) from exc
    import certifi  # httpx's own default bundle

    return ssl.create_default_context(cafile=certifi.where())


#: Absolute ``time.monotonic()`` by which the current :func:`request_json` call must end;
#: every socket connect/read/write of that call is bounded by it (see _DeadlineBackend).
_SOCKET_DEADLINE: ContextVar[float | None] = ContextVar("omictl_socket_deadline", default=None)


def _socket_timeout(timeout: float | None) -> float | None:
    """``timeout`` shortened to what is left of the call's deadline; raises
    :class:`_DeadlineExceeded` once it has passed."""
    until = _SOCKET_DEADLINE.get()
    if until is None:
        return timeout
    remaining = until - time.monotonic()
    if remaining <= 0:
        raise _DeadlineExceeded
    return remaining if timeout is None else min(timeout, remaining)


def _deadline_passed() -> bool:
    until = _SOCKET_DEADLINE.get()
    return until is not None and time.monotonic() >= until


class _DeadlineStream(httpcore.NetworkStream):
    """A socket whose every read and write also ends at the call's deadline.

    httpx's timeouts are per socket operation: a server sending one byte of its *headers*
    every half second never trips a 1 s read timeout, and httpx reads headers before
    request_json can look at a clock. Bounding each operation here closes that gap.
    """

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            return self._inner.read(max_bytes, _socket_timeout(timeout))
        except httpcore.TimeoutException:
            if _deadline_passed():
                raise _DeadlineExceeded from None
            raise

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        try:
            self._inner.write(buffer, _socket_timeout(timeout))
        except httpcore.TimeoutException:
            if _deadline_passed():
                raise _DeadlineExceeded from None
            raise

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(
            self._inner.start_tls(ssl_context, server_hostname, _socket_timeout(timeout))
        )

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's network backend with every stream wrapped in :class:`_DeadlineStream`."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            host, port, _socket_timeout(timeout), local_address, socket_options
        )
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:  # pragma: no cover - omictl never dials unix sockets
        return _DeadlineStream(
            self._inner.connect_unix_socket(path, _socket_timeout(timeout), socket_options)
        )

    def sleep(self, seconds: float) -> None:  # pragma: no cover - unused by HTTP/1.1
        self._inner.sleep(seconds)


def make_client(*, timeout: float = 10.0, insecure: bool = False) -> httpx.Client:
    """The one HTTP client factory.

    Guarantees: ``timeout`` seconds for connect, read, write and pool waits; the omictl
    ``User-Agent``; TLS verified always (``insecure`` does not change TLS, it only lets
    :func:`check_url` allow plain HTTP); redirects never followed; ``Accept-Encoding:
    identity``; and ``trust_env=False``: no ``HTTP(S)_PROXY``/``ALL_PROXY`` from the
    environment (a proxy variable must not silently re-route signed requests) and no
    ``.netrc`` credentials sent to registries or providers. ``SSL_CERT_FILE`` and
    ``SSL_CERT_DIR`` are still honoured. Every socket operation is also bounded by the
    deadline of the :func:`request_json` call it serves (headers included).
    """
    del insecure  # accepted for symmetry with the CLI flag; TLS is verified regardless
    if not (math.isfinite(timeout) and timeout > 0):
        raise UsageError(f"timeout must be a positive number of seconds, not {timeout!r}")
    transport = httpx.HTTPTransport(verify=_ssl_context(), trust_env=False)
    # httpx has no public hook for the network backend; the pool's attribute is stable
    # across httpcore 1.x, and tests/hostile prove the deadline holds on real sockets.
    pool = transport._pool
    pool._network_backend = _DeadlineBackend(pool._network_backend)
    return httpx.Client(
        timeout=httpx.Timeout(timeout),
        headers={
            "User-Agent": USER_AGENT,
            "Accept": "application/json, application/problem+json",
            "Accept-Encoding": "identity",
        },
        transport=transport,
        follow_redirects=False,
        trust_env=False,
    )


# --------------------------------------------------------------------------- retries


@dataclass(frozen=True)
class RetryPolicy:
    """How many tries and how long to wait between them (PROTOCOL.md section 6).

    The wait before try ``n + 1`` is "full jitter": ``jitter() * min(max_delay,
    base_delay * 2 ** (n - 1))``, or the server's ``Retry-After`` (capped at ``max_delay``)
    when that is longer: a server may slow the retries down, never speed them up
    (PROTOCOL.md section 6: exponential backoff and jitter).
    ``sleep``, ``jitter`` and ``clock`` are injectable so tests never wait.
    """

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    sleep: Callable[[float], None] = time.sleep
    jitter: Callable[[], float] = random.random
    clock: Callable[[], float] = field(default=time.monotonic)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("RetryPolicy delays must not be negative")

    def backoff(self, tries_done: int) -> float:
        """The jittered wait after ``tries_done`` failed tries (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** min(tries_done - 1, 62))
        return max(0.0, min(1.0, self.jitter())) * ceiling


@dataclass(frozen=True)
class Answer:
    """A 2xx answer: its status, parsed JSON body, headers and how many tries it took."""

    status: int
    body: Any
    headers: Mapping[str, str]
    attempts: int


class _Retry(Exception):
    """One try failed in a way that may be retried; carries the error to raise if not."""

    def __init__(
        self, error: OmictlError, *, retry_after: float | None = None, sent: bool = True
    ) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after
        #: False when the try never connected (refused, no route, connect timeout): the
        #: request cannot have reached the server
        self.sent = sent


class _DeadlineExceeded(Exception):
    pass


def printable(text: str, limit: int = _TEXT_LIMIT) -> str:
    """Server text made safe for a terminal: control and format characters (ANSI escapes,
    bidi overrides, newlines) shown as ``\\uXXXX``, and cut to ``limit`` characters."""
    out = inert(text)
    return out if len(out) <= limit else out[: limit - 3] + "..."


def _media_type(headers: httpx.Headers) -> str:
    return str(headers.get("content-type", "")).split(";", 1)[0].strip().lower()


def _is_json_type(media: str) -> bool:
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _retry_after(headers: httpx.Headers, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date), else None."""
    value = headers.get("retry-after", "").strip()
    if not value or len(value) > 64:  # an HTTP-date is 29 characters
        return None
    if value.isascii() and value.isdigit():  # "²".isdigit() is true, int("²") fails
        digits = value.lstrip("0") or "0"
        return float(int(digits)) if len(digits) <= 6 else 1e6  # capped: no huge ints
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    except OverflowError:  # pragma: no cover - a date at the edge of datetime's range
        return None


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The ssl error somewhere in ``exc``'s cause/context chain (cycles tolerated)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        cur = todo.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLError):
            return cur
        todo.extend(e for e in (cur.__cause__, cur.__context__) if e is not None)
    return None


def _describe(exc: httpx.HTTPError) -> str:
    kinds: list[tuple[type[httpx.HTTPError], str]] = [
        (httpx.ConnectTimeout, "connecting timed out"),
        (httpx.ReadTimeout, "no answer within the read timeout"),
        (httpx.WriteTimeout, "sending the request timed out"),
        (httpx.PoolTimeout, "no free connection within the timeout"),
        (httpx.ConnectError, "connection failed"),
        (httpx.RemoteProtocolError, "the connection broke mid-answer"),
        (httpx.NetworkError, "network error"),
    ]
    for kind, text in kinds:
        if isinstance(exc, kind):
            reason = printable(str(exc), 160)
            return f"{text} ({reason})" if reason else text
    return printable(f"{type(exc).__name__}: {exc}", 200)


def _decode(raw: bytes, encoding: str, *, what: str, host: str) -> bytes:
    """Undo a Content-Encoding, never producing more than MAX_BODY_BYTES (bomb safe)."""
    if encoding in ("", "identity"):
        return raw
    if encoding in ("gzip", "x-gzip"):
        candidates = [16 + zlib.MAX_WBITS]
    elif encoding == "deflate":
        candidates = [zlib.MAX_WBITS, -zlib.MAX_WBITS]  # zlib-wrapped, else raw deflate
    else:
        raise ProtocolError(
            f"{what}: {host} answered with Content-Encoding {printable(encoding, 40)!r}, "
            "which omictl does not accept (it asks for identity)"
        )
    last: zlib.error | None = None
    for wbits in candidates:
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(raw, MAX_BODY_BYTES + 1)
        except zlib.error as exc:
            last = exc
            continue
        if len(out) > MAX_BODY_BYTES:
            raise ProtocolError(
                f"{what}: the answer from {host} decompresses to more than {MAX_BODY_BYTES} bytes"
            )
        if not inflater.eof or inflater.unused_data:
            raise ProtocolError(f"{what}: {host} sent a truncated or padded {encoding} body")
        return out
    raise ProtocolError(f"{what}: {host} sent an invalid {encoding} body ({last})")


def _read_body(
    response: httpx.Response, *, what: str, host: str, clock: Callable[[], float], until: float
) -> bytes:
    """Read the whole body: at most MAX_BODY_BYTES raw and decoded, before ``until``."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ProtocolError(
            f"{what}: the answer from {host} is {int(declared)} bytes, "
            f"over the {MAX_BODY_BYTES}-byte limit"
        )
    chunks: list[bytes] = []
    size = 0
    stream: Iterator[bytes] = response.iter_raw()  # one chunk per socket read
    for chunk in stream:
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ProtocolError(
                f"{what}: the answer from {host} is over the {MAX_BODY_BYTES}-byte limit"
            )
        chunks.append(chunk)
        if clock() > until:
            raise _DeadlineExceeded
    encodings = [e.strip().lower() for e in response.headers.get("content-encoding", "").split(",")]
    body = b"".join(chunks)
    for encoding in reversed([e for e in encodings if e]):
        body = _decode(body, encoding, what=what, host=host)
    return body


def _problem_of(status: int, body: bytes, media: str) -> Problem | None:
    """The RFC 9457 problem in an error answer, or None if it carries none."""
    if not _is_json_type(media):  # application/problem+json is a +json type
        return None
    try:
        return parse_problem(parse_json(body, what="problem"), status=status)
    except ProtocolError:
        return None


def _problem_text(problem: Problem) -> str:
    parts = (printable(problem.title), printable(problem.detail))
    return ": ".join(part for part in parts if part)


def _rejection(
    status: int, body: bytes, media: str, *, what: str, host: str
) -> RemoteRejected | ProtocolError:
    """Translate a 4xx (PROTOCOL.md section 5): title and detail shown, never the raw body.

    A 4xx without a problem+json body (an HTML page, text, JSON that is no problem) breaks
    section 5, which makes it a protocol error (exit 5): exit 4 is for a problem+json 4xx
    (CLI.md)."""
    problem = _problem_of(status, body, media)
    if problem is None:
        return ProtocolError(
            f"{what}: {host} answered HTTP {status} without a problem+json body",
            hint="the server does not follow the OMI error format (PROTOCOL.md section 5); "
            "check the URL points at an OMI registry or service",
            details={"status": status},
        )
    label = f"HTTP {status} {printable(problem.code, 80)}" if problem.code else f"HTTP {status}"
    return RemoteRejected(
        f"{what} was rejected by {host} ({label}): "
        f"{_problem_text(problem) or 'no title or detail given'}",
        status=status,
        problem_type=problem.type,
        title=printable(problem.title),
        detail=printable(problem.detail),
        problem=problem.body,
        hint=PROBLEM_HINTS.get(problem.code) if problem.type.startswith(PROBLEM_PREFIX) else None,
    )


def _server_failure(status: int, body: bytes, media: str, *, what: str, host: str) -> str:
    problem = _problem_of(status, body, media)
    text = _problem_text(problem) if problem is not None else ""
    return f"{what}: {host} failed (HTTP {status})" + (f": {text}" if text else "")


def _one_try(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    body: Callable[[], bytes] | None,
    what: str,
    host: str,
    clock: Callable[[], float],
    until: float,
    attempt: int,
) -> Answer:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    content = body() if body is not None else None  # fresh signature per try (section 6)
    try:
        with client.stream(
            method, url, content=content, headers=headers, follow_redirects=False
        ) as response:
            status = response.status_code
            if 300 <= status < 400:
                location = response.headers.get("location", "")
                target = host_of(location) if location else "nowhere"
                raise ProtocolError(
                    f"{what}: {host} answered HTTP {status}, a redirect to "
                    f"{printable(target, 80)}; redirects are not followed for signed requests",
                    hint="use the final URL directly (check --registry or the binding's "
                    "endpoint_url)",
                )
            raw = _read_body(response, what=what, host=host, clock=clock, until=until)
            media = _media_type(response.headers)
            headers_out = httpx.Headers(response.headers)
    except httpx.HTTPError as exc:
        tls = _tls_failure(exc)
        if tls is not None:
            # a certificate that does not verify will not verify on the next try either
            raise RemoteUnavailable(
                f"{what}: TLS with {host} failed: {printable(str(tls), 200)}",
                hint="check the URL; for a private CA set SSL_CERT_FILE",
                code="tls_error",
                # a handshake that failed (while connecting) sent nothing; a TLS error later
                # (reading the answer) comes after the request, and an earlier try (a
                # timeout) may have sent one
                details={"never_sent": True}
                if attempt == 1 and isinstance(exc, httpx.ConnectError)
                else None,
            ) from exc
        retryable = isinstance(
            exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError
        )
        local = is_loopback_host(urllib.parse.urlsplit(url).hostname or "")
        error = RemoteUnavailable(
            f"{what}: cannot get an answer from {host}: {_describe(exc)}",
            hint=f"nothing answers at {host}: is `omictl sandbox` (or your server) running there?"
            if local and isinstance(exc, httpx.ConnectError)
            else "check the URL and your network, or raise the timeout "
            "(--timeout or OMICTL_TIMEOUT)",
        )
        if retryable:
            never_connected = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
            raise _Retry(error, sent=not never_connected) from exc
        raise error from exc
    except httpx.InvalidURL as exc:
        raise UsageError(f"{what}: {printable(url, 120)} is not a valid URL: {exc}") from exc
    except httpx.StreamError as exc:  # pragma: no cover - a misuse of httpx streams
        raise ProtocolError(f"{what}: cannot read the answer from {host}: {exc}") from exc

    if 200 <= status < 300:
        if not _is_json_type(media):
            raise ProtocolError(
                f"{what}: {host} answered HTTP {status} with content type "
                f"{printable(media or 'none', 60)!r}, not application/json"
            )
        parsed = parse_json(raw, what=f"{what} answer from {host}")
        return Answer(status=status, body=parsed, headers=headers_out, attempts=attempt)
    if status in RETRY_STATUSES:
        if status == 429:
            error = RemoteUnavailable(
                f"{what}: {host} is rate limiting (HTTP 429)",
                hint="wait a minute and re-run",
                code="rate_limited",
            )
        else:
            error = RemoteUnavailable(
                _server_failure(status, raw, media, what=what, host=host),
                hint="the server is overloaded or down; re-run later",
            )
        raise _Retry(error, retry_after=_retry_after(headers_out))
    if 400 <= status < 500:
        raise _rejection(status, raw, media, what=what, host=host)
    if 500 <= status < 600:
        raise RemoteUnavailable(
            _server_failure(status, raw, media, what=what, host=host),
            hint="the server failed; re-run later, or ask its operator",
        )
    raise ProtocolError(f"{what}: {host} answered with HTTP status {status}")


def request_json(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    body: Callable[[], bytes] | None = None,
    policy: RetryPolicy,
    what: str,
    deadline: float | None = None,
) -> Answer:
    """Send one request, with retries, and return its parsed 2xx JSON answer.

    ``body`` is a factory called once per try, so every try carries a freshly signed
    envelope (new nonce and timestamp, PROTOCOL.md section 6); it is sent as
    ``application/json``. Tries are retried, up to ``policy.attempts`` in all, only for
    connection errors and timeouts and for HTTP 429/502/503/504 (``Retry-After`` honoured
    up to ``policy.max_delay``). A signed DELETE or unbind whose answer was lost may be
    re-sent: the provider answers a repeated valid DELETE with the original receipt, and
    the registry answers ``already_revoked`` with the record, so a retry never does
    anything twice.

    ``deadline`` bounds the whole call in seconds, tries and waits included (default
    :data:`DEADLINE_FACTOR` times the client's read timeout), so a server trickling
    bytes cannot hold omictl for ever. It is enforced on every socket connect, read and
    write of the call (response headers included), not only between body chunks.

    Raises :class:`ProtocolError` for any redirect (never followed), an answer over
    :data:`MAX_BODY_BYTES` (after decoding), or a 2xx that is not strict JSON with a JSON
    content type, or a 4xx without a problem+json body; :class:`RemoteRejected` for a
    problem+json 4xx (its title and detail shown, with a hint per code);
    :class:`RemoteUnavailable` for 5xx, 429 after the last try, connection errors,
    timeouts and a passed deadline. Nothing but
    :class:`OmictlError` escapes.
    """
    clock = policy.clock
    if deadline is None:
        read = client.timeout.read
        deadline = DEADLINE_FACTOR * (read if read is not None else 10.0)
    until = clock() + deadline
    token = _SOCKET_DEADLINE.set(time.monotonic() + deadline)
    try:
        return _request_loop(
            client, method, url, body=body, policy=policy, what=what, deadline=deadline, until=until
        )
    finally:
        _SOCKET_DEADLINE.reset(token)


def _request_loop(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    body: Callable[[], bytes] | None,
    policy: RetryPolicy,
    what: str,
    deadline: float,
    until: float,
) -> Answer:
    clock = policy.clock
    host = host_of(url)
    last: _Retry | None = None
    tried = 0
    sent = False  # whether any try got as far as sending
    for attempt in range(1, policy.attempts + 1):
        if clock() > until:
            break
        tried = attempt
        try:
            return _one_try(
                client,
                method,
                url,
                body=body,
                what=what,
                host=host,
                clock=clock,
                until=until,
                attempt=attempt,
            )
        except _Retry as retry:
            last = retry
            sent = sent or retry.sent
        except _DeadlineExceeded:
            raise RemoteUnavailable(
                f"{what}: {host} did not finish answering within {deadline:g} s",
                hint="the server is too slow; re-run later or raise the timeout "
                "(--timeout or OMICTL_TIMEOUT)",
                code="deadline_exceeded",
            ) from None
        if attempt == policy.attempts:
            break
        delay = policy.backoff(attempt)
        if last.retry_after is not None:  # may ask for longer, never for less than backoff
            delay = max(delay, min(last.retry_after, policy.max_delay))
        if clock() + delay > until:
            break
        policy.sleep(delay)
    if last is None:
        raise RemoteUnavailable(
            f"{what}: no try fitted within the {deadline:g} s deadline",
            code="deadline_exceeded",
        )
    error = last.error
    tries = "1 try" if tried == 1 else f"{tried} tries"
    raise type(error)(
        f"{error.message} (gave up after {tries})",
        hint=error.hint,
        code=error.code,
        # "never sent" only when no try got past connecting: a caller may then say the
        # request cannot have arrived (a DELETE that could not connect wiped nothing)
        details={**error.details, **({} if sent else {"never_sent": True})},
    ) from last.__cause__
