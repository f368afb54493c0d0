"""Evidence bundles: everything needed to prove, offline, that a tenant was terminated
and its binding revoked, by which keys, at what time (CLI.md "Decommission").

A bundle holds the signed termination request, the provider's receipt, the signed unbind
request, the registry's revocation record, and the public keys they verify under.
:func:`verify_bundle` re-checks every signature and every id without trusting omictl.
Pure code: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omictl.core.envelope import (
    PUBLIC_KEY_BYTES,
    key_id,
    parse_envelope,
    parse_hex,
    verify_envelope,
)
from omictl.core.messages import (
    CONTEXT_TERMINATION,
    CONTEXT_UNBIND,
    verify_receipt,
    verify_revocation_record,
)
from omictl.errors import ProtocolError, VerificationError, shown

BUNDLE_FORMAT = "omictl-evidence"
BUNDLE_VERSION = 1


def build_bundle(
    *,
    app_id: str,
    service_id: str,
    created_at: int,
    registry_url: str,
    master_public_key: bytes,
    service_public_key: bytes,
    registry_public_key: bytes,
    termination_request: Mapping[str, Any] | None,
    receipt: Mapping[str, Any] | None,
    unbind_request: Mapping[str, Any],
    revocation_record: Mapping[str, Any],
) -> dict[str, Any]:
    """Assemble a bundle from envelopes exactly as they were sent and received."""
    record_data = revocation_record.get("data", {})
    receipt_id = receipt.get("data", {}).get("receipt_id") if receipt else None
    bundle_id = bundle_id_for(receipt_id, service_id, record_data.get("revoked_at"))
    return {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_VERSION,
        "bundle_id": bundle_id,
        "app_id": app_id,
        "service_id": service_id,
        "created_at": created_at,
        "registry_url": registry_url,
        "keys": {
            "master": _key_entry(master_public_key),
            "service": _key_entry(service_public_key),
            "registry": _key_entry(registry_public_key),
        },
        "termination_request": termination_request,
        "termination_receipt": receipt,
        "unbind_request": unbind_request,
        "revocation_record": revocation_record,
    }


def bundle_id_for(receipt_id: object, service_id: str, revoked_at: object) -> str:
    """A bundle's id: its receipt id, or for a revocation without a receipt
    (``--skip-provider``) ``REVOCATION-{service_id}-{revoked_at}``."""
    if isinstance(receipt_id, str) and receipt_id:
        return receipt_id
    return f"REVOCATION-{service_id}-{revoked_at}"


def _key_entry(public_key: bytes) -> dict[str, str]:
    return {"public_key": public_key.hex(), "key_id": key_id(public_key)}


@dataclass(frozen=True)
class BundleReport:
    """What :func:`verify_bundle` established."""

    bundle_id: str
    app_id: str
    service_id: str
    receipt_id: str | None
    revoked_at: int
    master_key_id: str
    service_key_id: str
    registry_key_id: str
    checks: tuple[str, ...]

    @property
    def provider_terminated(self) -> bool:
        """False for a ``--skip-provider`` bundle: revoked, but the provider was never asked
        to wipe (no termination request, no receipt); the service key then checks nothing."""
        return self.receipt_id is not None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "bundle_id": self.bundle_id,
            "app_id": self.app_id,
            "service_id": self.service_id,
            "receipt_id": self.receipt_id,
            "revoked_at": self.revoked_at,
            "keys": {
                "master": self.master_key_id,
                "service": self.service_key_id,
                "registry": self.registry_key_id,
            },
            "checks": list(self.checks),
            "provider_terminated": self.provider_terminated,
            "verified": True,
        }


def _key(bundle: Mapping[str, Any], role: str) -> bytes:
    keys = bundle.get("keys")
    if not isinstance(keys, Mapping) or not isinstance(keys.get(role), Mapping):
        raise ProtocolError(f"bundle has no {role} key")
    return parse_hex(
        keys[role].get("public_key"), field=f"keys.{role}.public_key", length=PUBLIC_KEY_BYTES
    )


def verify_bundle(
    bundle: object,
    *,
    expect_master_key: bytes | None = None,
    expect_registry_key: bytes | None = None,
    expect_service_key: bytes | None = None,
) -> BundleReport:
    """Re-check every signature and id of an evidence bundle, offline.

    Checks: the termination request is signed by the master key for this app/service with
    context ``permanent_termination``; the receipt verifies under the service key, names
    this app/service and says ``success``; the unbind request is signed by the master key
    with context ``decommission`` and embeds exactly that receipt; the revocation record is
    signed by the registry key, says ``REVOKED`` for this app/service and names the same
    receipt id. ``expect_*`` pin the keys the auditor trusts (otherwise the bundle's own are
    used, and reported by key id).

    Raises :class:`ProtocolError` for a malformed bundle, :class:`VerificationError` for
    any failed check.
    """
    if not isinstance(bundle, Mapping) or bundle.get("format") != BUNDLE_FORMAT:
        raise ProtocolError("not an omictl evidence bundle (format is not 'omictl-evidence')")
    version = bundle.get("format_version")
    if type(version) is not int or version != BUNDLE_VERSION:  # true == 1 in Python
        raise ProtocolError(f"unsupported bundle format_version {bundle.get('format_version')!r}")
    app_id = bundle.get("app_id")
    service_id = bundle.get("service_id")
    if not isinstance(app_id, str) or not isinstance(service_id, str):
        raise ProtocolError("bundle needs string app_id and service_id")
    master = _key(bundle, "master")
    service = _key(bundle, "service")
    registry = _key(bundle, "registry")
    for expected, got, role in (
        (expect_master_key, master, "master"),
        (expect_registry_key, registry, "registry"),
        (expect_service_key, service, "service"),
    ):
        if expected is not None and expected != got:
            raise VerificationError(
                f"bundle's {role} key {key_id(got)} is not the expected {key_id(expected)}"
            )
    checks: list[str] = []

    receipt_raw = bundle.get("termination_receipt")
    receipt_id: str | None = None
    if receipt_raw is not None:
        term_raw = bundle.get("termination_request")
        if term_raw is None:
            raise VerificationError("bundle has a receipt but no termination request")
        term = _check_request(
            term_raw, master, CONTEXT_TERMINATION, app_id, service_id, "termination request"
        )
        checks.append("termination request signed by master key")
        asked = term.data.get("data_handling")
        receipt = verify_receipt(
            receipt_raw,
            service_public_key=service,
            app_id=app_id,
            service_id=service_id,
            data_handling=asked if isinstance(asked, str) else None,
            key_source="the bundle's service key",
            bad_signature_hint="the bundle's receipt was altered, or signed by another key "
            "than the bundle names; do not accept this bundle as evidence",
        )
        receipt_id = receipt.receipt_id
        checks.append("termination receipt signed by service key, status success")
    else:
        checks.append(
            "no termination receipt: the provider was not asked to wipe (--skip-provider)"
        )

    unbind = _check_request(
        bundle.get("unbind_request"), master, CONTEXT_UNBIND, app_id, service_id, "unbind request"
    )
    embedded = unbind.data.get("provider_receipt")
    if embedded != receipt_raw:
        raise VerificationError("unbind request does not embed the bundle's receipt")
    checks.append(
        "unbind request signed by master key, embeds the receipt"
        if receipt_raw is not None
        else "unbind request signed by master key, carries no receipt"
    )

    record = verify_revocation_record(
        bundle.get("revocation_record"),
        registry_public_key=registry,
        app_id=app_id,
        service_id=service_id,
    )
    if record.receipt_id != receipt_id:
        raise VerificationError(
            f"revocation record names receipt {shown(record.receipt_id)}, "
            f"bundle holds {shown(receipt_id)}"
        )
    checks.append("revocation record signed by registry key, status REVOKED")
    # the bundle's id is not signed: it must be the one its signed contents give (as
    # build_bundle makes it), or a bundle could be shown, listed and found under another
    # tenant's receipt id
    bundle_id = bundle.get("bundle_id")
    expected_id = bundle_id_for(receipt_id, service_id, record.revoked_at)
    if bundle_id != expected_id:
        raise VerificationError(
            f"bundle_id {shown(bundle_id)} does not match its signed contents "
            f"(they give {expected_id})",
            hint="the bundle was altered; do not accept it as evidence",
        )
    return BundleReport(
        bundle_id=expected_id,
        app_id=app_id,
        service_id=service_id,
        receipt_id=receipt_id,
        revoked_at=record.revoked_at,
        master_key_id=key_id(master),
        service_key_id=key_id(service),
        registry_key_id=key_id(registry),
        checks=tuple(checks),
    )


def _check_request(
    raw: object, public_key: bytes, context: str, app_id: str, service_id: str, what: str
) -> Any:
    try:
        envelope = parse_envelope(raw, what=what)
    except ProtocolError as exc:
        raise VerificationError(exc.message) from exc
    verify_envelope(envelope, public_key, what=what, context=context)
    if envelope.data.get("app_id") != app_id or envelope.data.get("service_id") != service_id:
        raise VerificationError(f"{what} is for another app or service")
    return envelope
