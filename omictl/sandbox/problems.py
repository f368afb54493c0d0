"""problem+json answers (PROTOCOL.md section 5) and the sandbox's HTTP reply type."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from omictl.core.envelope import Envelope
from omictl.core.messages import SignedRequest, problem_json, verify_request
from omictl.errors import OmictlError

PROBLEM_CONTENT_TYPE = "application/problem+json"
JSON_CONTENT_TYPE = "application/json"

#: code -> (HTTP status, title). The first nine are PROTOCOL.md section 5; the rest are
#: plain HTTP conditions the table does not cover, in the same ``urn:omi:error:`` space.
PROBLEMS: dict[str, tuple[int, str]] = {
    "malformed_request": (400, "Malformed request"),
    "unsupported_version": (400, "Unsupported protocol version"),
    "invalid_signature": (401, "Signature does not verify"),
    "stale_request": (401, "Request timestamp outside the accepted window"),
    "replayed_nonce": (401, "Nonce already used"),
    "unknown_app": (404, "Unknown app"),
    "unknown_service": (404, "Unknown service"),
    "already_revoked": (409, "Service already revoked"),
    "invalid_receipt": (422, "Termination receipt does not verify"),
    # not in PROTOCOL.md section 5:
    "not_found": (404, "No such endpoint"),
    "method_not_allowed": (405, "Method not allowed"),
    "payload_too_large": (413, "Request body too large"),
    "service_unavailable": (503, "Service unavailable"),
    "internal_error": (500, "Internal error"),
    # what the HTTP server refuses before a handler runs (the server's send_error)
    "uri_too_long": (414, "Request URI too long"),
    "headers_too_large": (431, "Request header fields too large"),
    "not_implemented": (501, "Method not implemented"),
    "http_version_not_supported": (505, "HTTP version not supported"),
}

#: the HTTP status the standard library's server refuses a request with -> problem code
REFUSED_BY_SERVER: dict[int, str] = {
    400: "malformed_request",
    414: "uri_too_long",
    431: "headers_too_large",
    501: "not_implemented",
    505: "http_version_not_supported",
}


class SandboxProblem(Exception):
    """Raised by a peer's handler to answer with a problem.

    ``extra`` adds members to the body (``record`` of ``already_revoked``); ``headers``
    adds HTTP headers (``Allow``, ``Retry-After``).
    """

    def __init__(
        self, code: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        if code not in PROBLEMS:  # pragma: no cover - programming error
            raise ValueError(f"unknown problem code {code!r}")
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = extra

    @property
    def status(self) -> int:
        """The HTTP status of this problem."""
        return PROBLEMS[self.code][0]

    def to_json(self) -> dict[str, Any]:
        """The RFC 9457 body."""
        status, title = PROBLEMS[self.code]
        return problem_json(self.code, title, status, self.detail, **self.extra)


def verify_for(
    envelope: Envelope,
    *,
    master: bytes,
    context: str,
    what: str,
    now: int,
    app_id: str,
    service_id: str,
) -> SignedRequest:
    """Verify a signed request (PROTOCOL.md section 1) and that it names ``app_id`` and
    ``service_id``, the app and service the URL addresses.

    Raises :class:`SandboxProblem`: the core validator's code, or ``invalid_signature``
    for a request signed for another app or service (a valid signature over another
    target authorizes nothing here).
    """
    try:
        request = verify_request(
            envelope.to_json(), public_key=master, context=context, now=now, what=what
        )
    except OmictlError as exc:
        raise problem_from(exc) from exc
    if request.app_id != app_id or request.service_id != service_id:
        raise SandboxProblem(
            "invalid_signature",
            f"{what} is signed for {request.app_id}/{request.service_id}, "
            f"not {app_id}/{service_id}",
        )
    return request


def unavailable(detail: str) -> SandboxProblem:
    """A 503 ``service_unavailable`` problem (injected faults) with ``Retry-After: 0``."""
    return SandboxProblem("service_unavailable", detail, headers={"Retry-After": "0"})


def problem_from(exc: OmictlError, *, default: str = "malformed_request") -> SandboxProblem:
    """Translate a core validator's error into the problem it stands for.

    The core raises with ``code`` already set to a PROTOCOL.md section 5 code
    (``EnvelopeError``, ``RequestError``, ``VerificationError``); any other code becomes
    ``default`` (``wrong_context`` from ``verify_envelope`` is a bad signature for the
    step, see PROTOCOL.md section 1).
    """
    code = exc.code
    if code == "wrong_context":
        code = "invalid_signature"
    if code not in PROBLEMS or PROBLEMS[code][0] >= 500:
        code = default
    return SandboxProblem(code, exc.message)


@dataclass
class Reply:
    """What a handler answers. ``drop`` closes the connection without any answer."""

    status: int = 200
    body: bytes = b""
    content_type: str = JSON_CONTENT_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False

    @classmethod
    def json(cls, value: Any, *, status: int = 200) -> Reply:
        """A JSON answer (compact, UTF-8)."""
        return cls(status=status, body=dump(value))

    @classmethod
    def raw(cls, body: bytes, *, status: int = 200) -> Reply:
        """Already serialized JSON, sent byte for byte (a stored envelope)."""
        return cls(status=status, body=body)

    @classmethod
    def problem(cls, problem: SandboxProblem) -> Reply:
        """A problem+json answer."""
        return cls(
            status=problem.status,
            body=dump(problem.to_json()),
            content_type=PROBLEM_CONTENT_TYPE,
            headers=problem.headers,
        )


def dump(value: Any) -> bytes:
    """Compact UTF-8 JSON."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
