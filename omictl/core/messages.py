"""Builders and validators for the protocol's messages (PROTOCOL.md sections 1, 3, 4).

Pure code: the clock (``now``) and randomness (``nonce``) are passed in. Validators of
received messages raise :class:`~omictl.errors.ProtocolError` for a wrong shape and
:class:`~omictl.errors.VerificationError` for anything that fails verification; they
return frozen dataclasses holding the envelope exactly as received.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from omictl.core.envelope import (
    PUBLIC_KEY_BYTES,
    Envelope,
    parse_envelope,
    parse_hex,
    verify_envelope,
)
from omictl.errors import OmictlError, ProtocolError, VerificationError, shown

CONTEXT_TERMINATION = "permanent_termination"
CONTEXT_UNBIND = "decommission"
CONTEXT_PURGE = "purge"
CONTEXT_RECORD = "revocation_record"
#: A receiver rejects a timestamp further than this from its clock (PROTOCOL.md section 1).
FRESHNESS_WINDOW_S = 300
#: A receiver remembers accepted (key, nonce) pairs this long (PROTOCOL.md section 1).
NONCE_WINDOW_S = 600
DATA_HANDLING = ("wipe", "retain")
BINDING_STATUSES = ("ACTIVE", "REVOKED")
PROPAGATION_STATUSES = ("delivered", "failed", "pending")
PROBLEM_PREFIX = "urn:omi:error:"

DataHandling = Literal["wipe", "retain"]

_NONCE_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")


class RequestError(OmictlError):
    """A received request failed a server-side check; ``code`` is the PROTOCOL.md section 5
    code to answer with (``malformed_request``, ``stale_request``, ...)."""

    code = "malformed_request"


# --------------------------------------------------------------------------- requests


def validate_nonce(nonce: object, *, error: type[OmictlError] = RequestError) -> str:
    """Check a nonce is 16-64 chars of ``[A-Za-z0-9_-]``; return it."""
    if not isinstance(nonce, str) or not _NONCE_RE.fullmatch(nonce):
        raise error("nonce must be 16 to 64 characters of A-Z, a-z, 0-9, '_' and '-'")
    return nonce


def parse_timestamp(value: object, *, field: str, error: type[OmictlError]) -> int:
    """Check a timestamp is integer Unix seconds (PROTOCOL.md section 1); return it."""
    # bool is an int subclass in Python; JSON true is not a timestamp.
    if not isinstance(value, int) or isinstance(value, bool):
        raise error(f"{field} must be integer Unix seconds")
    return value


def check_freshness(timestamp: int, *, now: int, window: int = FRESHNESS_WINDOW_S) -> None:
    """Raise :class:`RequestError` (``stale_request``) if ``timestamp`` is more than
    ``window`` seconds from ``now``."""
    if abs(now - timestamp) > window:
        raise RequestError(
            f"request timestamp {timestamp} is {now - timestamp:+d} s from the receiver's clock "
            f"(window {window} s)",
            code="stale_request",
            hint="check the system clock",
        )


def termination_request_data(
    *, app_id: str, service_id: str, timestamp: int, nonce: str, data_handling: str = "wipe"
) -> dict[str, Any]:
    """The ``data`` of a DELETE to a Domain Service (PROTOCOL.md section 4)."""
    if data_handling not in DATA_HANDLING:
        raise OmictlError(f"data_handling must be one of {DATA_HANDLING}")
    return {
        "app_id": app_id,
        "service_id": service_id,
        "timestamp": timestamp,
        "nonce": validate_nonce(nonce, error=OmictlError),
        "context": CONTEXT_TERMINATION,
        "data_handling": data_handling,
    }


def unbind_request_data(
    *,
    app_id: str,
    service_id: str,
    timestamp: int,
    nonce: str,
    receipt: Envelope | Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The ``data`` of an unbind request (PROTOCOL.md section 3), receipt embedded as received."""
    data: dict[str, Any] = {
        "app_id": app_id,
        "service_id": service_id,
        "timestamp": timestamp,
        "nonce": validate_nonce(nonce, error=OmictlError),
        "context": CONTEXT_UNBIND,
    }
    if receipt is not None:
        data["provider_receipt"] = (
            receipt.to_json() if isinstance(receipt, Envelope) else dict(receipt)
        )
    return data


@dataclass(frozen=True)
class SignedRequest:
    """A verified request as a server sees it."""

    envelope: Envelope
    app_id: str
    service_id: str
    timestamp: int
    nonce: str


def verify_request(
    obj: object,
    *,
    public_key: bytes,
    context: str,
    now: int,
    what: str,
    window: int = FRESHNESS_WINDOW_S,
) -> SignedRequest:
    """Server side of a signed request: shape, signature, context, freshness, nonce format.

    Nonce *replay* needs state and is the caller's job. Raises ``EnvelopeError``
    (``malformed_request``/``unsupported_version``), :class:`VerificationError`
    (``invalid_signature``) or :class:`RequestError` (``malformed_request``,
    ``stale_request``).
    """
    envelope = parse_envelope(obj, what=what)
    try:
        verify_envelope(envelope, public_key, what=what)
    except VerificationError as exc:
        raise VerificationError(exc.message, code="invalid_signature") from exc
    data = envelope.data
    if data.get("context") != context:
        # a valid signature over another step's message: treat as not signed for this step
        raise VerificationError(
            f"{what} has context {shown(data.get('context'))}, expected {context!r}",
            code="invalid_signature",
        )
    app_id = data.get("app_id")
    service_id = data.get("service_id")
    if not isinstance(app_id, str) or not isinstance(service_id, str):
        raise RequestError(f"{what} needs string app_id and service_id")
    timestamp = parse_timestamp(
        data.get("timestamp"), field=f"{what}.timestamp", error=RequestError
    )
    nonce = validate_nonce(data.get("nonce"))
    check_freshness(timestamp, now=now, window=window)
    return SignedRequest(
        envelope=envelope, app_id=app_id, service_id=service_id, timestamp=timestamp, nonce=nonce
    )


# --------------------------------------------------------------------------- registry answers


def _obj(value: object, *, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ProtocolError(f"{what} must be a JSON object")
    return value


def _str(obj: Mapping[str, Any], key: str, *, what: str, optional: bool = False) -> str:
    value = obj.get(key)
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        raise ProtocolError(f"{what}.{key} must be a string")
    return value


@dataclass(frozen=True)
class RegistryInfo:
    """``GET /v1/registry``: the registry's name and signing key."""

    name: str
    public_key: bytes
    version: str


def parse_registry_info(value: object) -> RegistryInfo:
    """Validate a ``GET /v1/registry`` answer. Raises :class:`ProtocolError`."""
    obj = _obj(value, what="registry info")
    version = _str(obj, "version", what="registry info")
    if version != "1.0":
        raise ProtocolError(f"registry speaks version {shown(version)}, this omictl speaks '1.0'")
    return RegistryInfo(
        name=_str(obj, "name", what="registry info"),
        public_key=parse_hex(
            obj.get("public_key"), field="registry.public_key", length=PUBLIC_KEY_BYTES
        ),
        version=version,
    )


@dataclass(frozen=True)
class App:
    """``GET /v1/apps/{app_id}``."""

    app_id: str
    master_public_key: bytes
    status: str


def parse_app(value: object, *, app_id: str) -> App:
    """Validate an app record and that it is the one asked for. Raises :class:`ProtocolError`."""
    obj = _obj(value, what="app")
    got = _str(obj, "app_id", what="app")
    if got != app_id:
        raise VerificationError(f"registry answered for app {shown(got)}, asked for {app_id!r}")
    return App(
        app_id=got,
        master_public_key=parse_hex(
            obj.get("master_public_key"), field="app.master_public_key", length=PUBLIC_KEY_BYTES
        ),
        status=_str(obj, "status", what="app"),
    )


@dataclass(frozen=True)
class Binding:
    """A service binding, the registry's "Service DNS" record."""

    app_id: str
    service_id: str
    service_type: str
    endpoint_url: str
    public_key: bytes
    status: str
    revoked_at: int | None

    def to_json(self) -> dict[str, Any]:
        """The wire form."""
        return {
            "app_id": self.app_id,
            "service_id": self.service_id,
            "service_type": self.service_type,
            "endpoint_url": self.endpoint_url,
            "public_key": self.public_key.hex(),
            "status": self.status,
            "revoked_at": self.revoked_at,
        }


def parse_binding(value: object, *, app_id: str, service_id: str | None = None) -> Binding:
    """Validate a binding (and, when given, that it is the one asked for).

    Raises :class:`ProtocolError` for a wrong shape and :class:`VerificationError` when the
    registry answered about another app or service.
    """
    obj = _obj(value, what="binding")
    got_app = _str(obj, "app_id", what="binding")
    got_service = _str(obj, "service_id", what="binding")
    if got_app != app_id or (service_id is not None and got_service != service_id):
        raise VerificationError(
            f"registry answered with binding {got_app}/{got_service}, "
            f"asked for {app_id}/{service_id or '*'}"
        )
    status = _str(obj, "status", what="binding")
    if status not in BINDING_STATUSES:
        raise ProtocolError(f"binding.status must be ACTIVE or REVOKED, got {shown(status)}")
    revoked_at = obj.get("revoked_at")
    if revoked_at is not None:
        revoked_at = parse_timestamp(revoked_at, field="binding.revoked_at", error=ProtocolError)
    return Binding(
        app_id=got_app,
        service_id=got_service,
        service_type=_str(obj, "service_type", what="binding", optional=True),
        endpoint_url=_str(obj, "endpoint_url", what="binding"),
        public_key=parse_hex(obj.get("public_key"), field="binding.public_key", length=32),
        status=status,
        revoked_at=revoked_at,
    )


def parse_binding_list(value: object, *, app_id: str) -> list[Binding]:
    """Validate ``GET /v1/apps/{app_id}/services``. Raises :class:`ProtocolError`."""
    obj = _obj(value, what="service list")
    if obj.get("app_id") != app_id:
        raise VerificationError(f"registry answered a service list for {shown(obj.get('app_id'))}")
    services = obj.get("services")
    if not isinstance(services, list):
        raise ProtocolError("service list.services must be a list")
    return [parse_binding(item, app_id=app_id) for item in services]


# --------------------------------------------------------------------------- receipts, records


@dataclass(frozen=True)
class Receipt:
    """A verified termination receipt (PROTOCOL.md section 4)."""

    envelope: Envelope
    app_id: str
    service_id: str
    receipt_id: str
    message: str
    terminated_at: int | None
    data_handling: str | None


def verify_receipt(
    value: object,
    *,
    service_public_key: bytes,
    app_id: str,
    service_id: str,
    data_handling: str | None = None,
    error_code: str = "invalid_receipt",
    key_source: str = "the service key on file in the registry",
    bad_signature_hint: str = "the receipt was not signed by the decommissioned service; "
    "nothing was revoked",
) -> Receipt:
    """Accept a termination receipt only if it verifies under the service key from the
    registry binding, names the requested app and service, and says ``success``.

    When ``data_handling`` is given, a receipt stating another one is refused too (the
    field is optional for providers, PROTOCOL.md section 4).

    Raises :class:`VerificationError` (code ``error_code``) otherwise, including for a
    malformed receipt: a receipt we cannot read is a receipt we did not verify. A bad
    signature's message names ``key_source`` and carries ``bad_signature_hint`` (the
    defaults speak for a live decommission; an offline bundle check says its own).
    """
    try:
        envelope = parse_envelope(value, what="termination receipt")
    except ProtocolError as exc:
        raise VerificationError(exc.message, code=error_code) from exc
    try:
        verify_envelope(envelope, service_public_key, what="termination receipt")
    except VerificationError as exc:
        raise VerificationError(
            f"{exc.message} ({key_source})", code=error_code, hint=bad_signature_hint
        ) from exc
    data = envelope.data
    if data.get("app_id") != app_id or data.get("service_id") != service_id:
        raise VerificationError(
            f"termination receipt is for {shown(data.get('app_id'))}/"
            f"{shown(data.get('service_id'))}, "
            f"not {app_id}/{service_id}",
            code=error_code,
        )
    if data.get("status") != "success":
        raise VerificationError(
            f"termination receipt status is {shown(data.get('status'))}, not 'success'",
            code=error_code,
        )
    receipt_id = data.get("receipt_id")
    if not isinstance(receipt_id, str) or not receipt_id or len(receipt_id) > 256:
        raise VerificationError("termination receipt has no usable receipt_id", code=error_code)
    terminated_at = data.get("terminated_at")
    if terminated_at is not None and (
        not isinstance(terminated_at, int) or isinstance(terminated_at, bool)
    ):
        raise VerificationError(
            "termination receipt terminated_at is not an integer", code=error_code
        )
    handling = data.get("data_handling")
    if data_handling is not None and handling is not None and handling != data_handling:
        # the provider did something else than asked (kept data we asked it to wipe)
        raise VerificationError(
            f"termination receipt says data_handling {shown(handling)}, but {data_handling!r} "
            "was requested",
            code=error_code,
        )
    message = data.get("message")
    return Receipt(
        envelope=envelope,
        app_id=app_id,
        service_id=service_id,
        receipt_id=receipt_id,
        message=message if isinstance(message, str) else "",
        terminated_at=terminated_at,
        data_handling=handling if isinstance(handling, str) else None,
    )


@dataclass(frozen=True)
class Propagation:
    """One purge delivery in a revocation record."""

    target: str
    status: str
    detail: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The wire form."""
        out: dict[str, Any] = {"target": self.target, "status": self.status}
        if self.detail is not None:
            out["detail"] = self.detail
        return out


@dataclass(frozen=True)
class RevocationRecord:
    """A verified, registry-signed revocation record (PROTOCOL.md section 3)."""

    envelope: Envelope
    app_id: str
    service_id: str
    revoked_at: int
    receipt_id: str | None
    propagation: tuple[Propagation, ...]


def verify_revocation_record(
    value: object, *, registry_public_key: bytes, app_id: str, service_id: str
) -> RevocationRecord:
    """Accept a revocation record only if the pinned registry key signed it, with context
    ``revocation_record``, for this app and service, with status ``REVOKED``.

    Raises :class:`VerificationError` otherwise (a malformed record included).
    """
    try:
        envelope = parse_envelope(value, what="revocation record")
    except ProtocolError as exc:
        raise VerificationError(exc.message, code="invalid_record") from exc
    verify_envelope(envelope, registry_public_key, what="revocation record", context=CONTEXT_RECORD)
    data = envelope.data
    if data.get("app_id") != app_id or data.get("service_id") != service_id:
        raise VerificationError(
            f"revocation record is for {shown(data.get('app_id'))}/"
            f"{shown(data.get('service_id'))}, "
            f"not {app_id}/{service_id}",
            code="invalid_record",
        )
    if data.get("status") != "REVOKED":
        raise VerificationError(
            f"revocation record status is {shown(data.get('status'))}", code="invalid_record"
        )
    revoked_at = data.get("revoked_at")
    if not isinstance(revoked_at, int) or isinstance(revoked_at, bool):
        raise VerificationError(
            "revocation record revoked_at is not an integer", code="invalid_record"
        )
    for member in ("receipt_id", "propagation"):  # PROTOCOL.md section 3's record shape
        if member not in data:
            raise VerificationError(
                f"revocation record has no {member} member"
                + (" (null when no receipt was sent)" if member == "receipt_id" else ""),
                code="invalid_record",
            )
    receipt_id = data.get("receipt_id")
    if receipt_id is not None and (not isinstance(receipt_id, str) or len(receipt_id) > 256):
        raise VerificationError(
            "revocation record receipt_id is not a string of at most 256 characters",
            code="invalid_record",
        )
    raw_prop = data["propagation"]
    if not isinstance(raw_prop, list):
        raise VerificationError(
            "revocation record propagation is not a list", code="invalid_record"
        )
    propagation: list[Propagation] = []
    for item in raw_prop:
        if (
            not isinstance(item, Mapping)
            or not isinstance(item.get("target"), str)
            or item.get("status") not in PROPAGATION_STATUSES
        ):
            raise VerificationError(
                "revocation record has a malformed propagation entry", code="invalid_record"
            )
        detail = item.get("detail")
        propagation.append(
            Propagation(
                target=item["target"],
                status=item["status"],
                detail=detail if isinstance(detail, str) else None,
            )
        )
    return RevocationRecord(
        envelope=envelope,
        app_id=app_id,
        service_id=service_id,
        revoked_at=revoked_at,
        receipt_id=receipt_id,
        propagation=tuple(propagation),
    )


# --------------------------------------------------------------------------- problems


@dataclass(frozen=True)
class Problem:
    """An RFC 9457 problem (PROTOCOL.md section 5)."""

    type: str
    title: str
    status: int
    detail: str
    body: dict[str, Any]

    @property
    def code(self) -> str:
        """The short code after ``urn:omi:error:`` (or the whole type if foreign)."""
        return self.type.removeprefix(PROBLEM_PREFIX)


def parse_problem(value: object, *, status: int) -> Problem | None:
    """Read a problem+json body; ``None`` if it is not one. Never raises."""
    if not isinstance(value, Mapping):
        return None
    ptype = value.get("type")
    title = value.get("title")
    detail = value.get("detail")
    if not isinstance(ptype, str):
        return None
    return Problem(
        type=ptype[:200],
        title=title[:200] if isinstance(title, str) else "",
        status=status,
        detail=detail[:500] if isinstance(detail, str) else "",
        body=dict(value),
    )


def problem_json(code: str, title: str, status: int, detail: str, **extra: Any) -> dict[str, Any]:
    """Build a problem+json body for ``code`` (server side)."""
    return {
        "type": PROBLEM_PREFIX + code,
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
    }
