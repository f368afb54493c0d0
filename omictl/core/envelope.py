"""Signed envelopes: RFC 8785 canonical bytes, Ed25519, strict hex, key ids (PROTOCOL.md section 1).

Pure code: no disk, network, environment or clock. What is signed is exactly
``rfc8785.dumps(data)``; what is verified is the canonical form of the ``data`` value *as
received*, never a re-built model of it, so extra members a peer added stay covered.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import rfc8785

from omictl.errors import (
    OmictlError,
    ProtocolError,
    UsageError,
    VerificationError,
    short_message,
    shown,
)

if TYPE_CHECKING:
    pass

VERSION = "1.0"
PUBLIC_KEY_BYTES = 32
SEED_BYTES = 32
SIGNATURE_BYTES = 64
KEY_ID_CHARS = 16
#: Top-level members a reader knows; others are ignored (PROTOCOL.md section 1).
ENVELOPE_MEMBERS = ("version", "data", "signature", "public_key_hint")

#: lower-case hex (the protocol's encoding) or upper-case hex, which readers accept; a mix
#: of both is neither, and is refused like any other non-hex (PROTOCOL.md section 1)
_HEX_RE = re.compile(r"[0-9a-f]*|[0-9A-F]*")
#: what a person may type for a key on the command line: any case
_ANY_CASE_HEX_RE = re.compile(r"[0-9a-fA-F]*")


class EnvelopeError(ProtocolError):
    """An envelope that is not of the protocol's shape.

    ``code`` is ``malformed_request`` or ``unsupported_version`` (PROTOCOL.md section 5),
    so a server can answer with the matching problem type.
    """

    code = "malformed_request"


def parse_hex(
    value: object,
    *,
    field: str,
    length: int,
    error: type[OmictlError] = ProtocolError,
    typed: bool = False,
) -> bytes:
    """Decode ``value`` as exactly ``length`` bytes of hex (lower or upper case, not mixed;
    ``typed``: a value a person gave on the command line, in any case, since the protocol's
    rule is for what peers send).

    Raises ``error`` (default :class:`ProtocolError`) naming ``field`` for anything else:
    a non-string, odd length, a wrong length or a non-hex character.
    """
    if not isinstance(value, str):
        raise error(f"{field} must be a hex string, got {type(value).__name__}")
    if len(value) != 2 * length or not (_ANY_CASE_HEX_RE if typed else _HEX_RE).fullmatch(value):
        raise error(
            f"{field} must be {2 * length} hex characters ({length} bytes)",
            hint="hex: 0-9 and a-f, in either case"
            if typed
            else "hex uses only 0-9 and a-f (or only 0-9 and A-F)",
        )
    return bytes.fromhex(value)


def to_hex(raw: bytes) -> str:
    """Lower-case hex, the protocol's encoding for keys and signatures."""
    return raw.hex()


def key_id(public_key: bytes) -> str:
    """The key id: first 16 hex chars of SHA-256 over the raw 32-byte public key."""
    return _key_id(bytes(public_key))


@functools.lru_cache(maxsize=256)  # a run sees a few keys, named in every step's message
def _key_id(public_key: bytes) -> str:
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise UsageError(f"a public key is {PUBLIC_KEY_BYTES} bytes, got {len(public_key)}")
    return hashlib.sha256(public_key).hexdigest()[:KEY_ID_CHARS]


def canonical_bytes(data: object, *, error: type[OmictlError] = UsageError) -> bytes:
    """The RFC 8785 (JCS) canonical UTF-8 bytes of ``data``.

    Raises ``error`` when JCS cannot represent the value exactly (integers beyond
    +/-2**53-1, NaN or infinite floats, lone surrogates, non-string keys, other types).
    """
    try:
        return rfc8785.dumps(data)  # type: ignore[arg-type]
    except (rfc8785.CanonicalizationError, TypeError, ValueError, RecursionError) as exc:
        raise error(f"data cannot be canonicalized (RFC 8785): {exc}") from exc


class Signer:
    """An Ed25519 signing key. Its ``repr`` and ``str`` never show secret bytes."""

    __slots__ = ("_key", "key_id", "name", "public_key")

    def __init__(self, seed: bytes, *, name: str = "") -> None:
        if len(seed) != SEED_BYTES:
            raise UsageError(f"an Ed25519 seed is {SEED_BYTES} bytes, got {len(seed)}")
        import nacl.signing  # lazy: key listings and JSON parsing never need libsodium

        self._key = nacl.signing.SigningKey(seed)
        self.public_key: bytes = bytes(self._key.verify_key)
        self.key_id: str = key_id(self.public_key)
        self.name = name

    def sign(self, message: bytes) -> bytes:
        """The 64-byte detached Ed25519 signature of ``message``."""
        return bytes(self._key.sign(message).signature)

    def seed_bytes(self) -> bytes:
        """The raw seed. Only the keystore calls this, to encrypt or export it."""
        return bytes(self._key)

    def __repr__(self) -> str:
        return f"Signer(name={self.name!r}, key_id={self.key_id!r})"

    __str__ = __repr__

    def __reduce__(self) -> Any:  # pragma: no cover - defensive
        raise TypeError("a Signer cannot be pickled")


@dataclass(frozen=True)
class Envelope:
    """A signed message: ``{"version", "data", "signature"[, "public_key_hint"]}``."""

    data: dict[str, Any]
    signature: bytes
    version: str = VERSION
    public_key_hint: str | None = None
    #: members outside the four known ones, kept only so a bundle can be re-emitted as received
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The wire form (a JSON-ready dict)."""
        out: dict[str, Any] = {
            "version": self.version,
            "data": self.data,
            "signature": to_hex(self.signature),
        }
        if self.public_key_hint is not None:
            out["public_key_hint"] = self.public_key_hint
        return out


def sign_envelope(data: Mapping[str, Any], signer: Signer, *, hint: bool = True) -> Envelope:
    """Sign ``data`` (canonical bytes) and return the envelope.

    Raises :class:`UsageError` if ``data`` is not a JSON object JCS can represent.
    """
    if not isinstance(data, Mapping):
        raise UsageError("the data to sign must be a JSON object")
    plain = dict(data)
    message = canonical_bytes(plain)
    return Envelope(
        data=plain,
        signature=signer.sign(message),
        public_key_hint=signer.key_id if hint else None,
    )


def parse_envelope(obj: object, *, what: str = "envelope") -> Envelope:
    """Check the shape of a received envelope and return it (signature not yet checked).

    Raises :class:`EnvelopeError` with code ``malformed_request`` (not an object, missing
    or mistyped members, bad signature hex) or ``unsupported_version``.
    """
    if not isinstance(obj, Mapping):
        raise EnvelopeError(f"{what} must be a JSON object")
    version = obj.get("version")
    if "version" not in obj:
        raise EnvelopeError(f"{what} has no version")
    if version != VERSION:
        raise EnvelopeError(
            f"{what} has unsupported version {shown(version)} (this omictl speaks {VERSION!r})",
            code="unsupported_version",
        )
    data = obj.get("data")
    if not isinstance(data, dict):
        raise EnvelopeError(f"{what}.data must be a JSON object")
    signature = parse_hex(
        obj.get("signature"),
        field=f"{what}.signature",
        length=SIGNATURE_BYTES,
        error=EnvelopeError,
    )
    hint = obj.get("public_key_hint")
    if hint is not None and not isinstance(hint, str):
        raise EnvelopeError(f"{what}.public_key_hint must be a string")
    extra = {k: v for k, v in obj.items() if k not in ENVELOPE_MEMBERS}
    return Envelope(
        data=data, signature=signature, version=VERSION, public_key_hint=hint, extra=extra
    )


def verify_envelope(
    envelope: Envelope,
    public_key: bytes,
    *,
    what: str = "envelope",
    context: str | None = None,
) -> Envelope:
    """Verify ``envelope`` under ``public_key`` and return it.

    Checks the Ed25519 signature over the canonical bytes of the received ``data``, then,
    when ``context`` is given, that ``data.context`` equals it (PROTOCOL.md section 1:
    a signature made for one step can never pass as another).

    Raises :class:`VerificationError` (code ``invalid_signature``) on a bad signature or
    non-canonicalizable data, and (code ``wrong_context``) on a context mismatch.
    """
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise VerificationError(f"cannot verify {what}: public key is not 32 bytes")
    message = canonical_bytes(envelope.data, error=VerificationError)
    try:
        import nacl.exceptions
        import nacl.signing

        nacl.signing.VerifyKey(public_key).verify(message, envelope.signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError) as exc:
        raise VerificationError(
            f"{what} signature does not verify under key {key_id(public_key)}",
            code="invalid_signature",
        ) from exc
    if context is not None and envelope.data.get("context") != context:
        raise VerificationError(
            f"{what} has context {shown(envelope.data.get('context'))}, expected {context!r}",
            code="wrong_context",
        )
    return envelope


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)  # in C; a duplicate shows as a shorter dict
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate member {key!r}")
            seen.add(key)
    return out


def parse_json(
    raw: bytes | str,
    *,
    what: str,
    error: type[OmictlError] = ProtocolError,
) -> Any:
    """Strictly parse JSON text: UTF-8, no NaN/Infinity, no duplicate members.

    Duplicate members are refused because two readers could see two different messages
    in the same signed bytes. Raises ``error`` naming ``what`` on any failure.
    """
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray) else raw
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise error(f"{what} is not valid JSON: {short_message(exc, 120)}") from exc
