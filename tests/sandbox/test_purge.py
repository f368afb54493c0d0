"""Propagation (PROTOCOL.md section 3): the registry's purge and the Auth/Billing receivers."""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest

from omictl.core.envelope import Signer, parse_envelope, sign_envelope, verify_envelope
from omictl.sandbox import Sandbox
from tests.sandbox.helpers import assert_rejected, fresh_nonce, now, send_unbind, unbind_request


def _registry_signer(sb: Sandbox) -> Signer:
    seed = next(r["value"] for r in sb.snapshot()["meta"] if r["key"] == "registry_seed")
    return Signer(bytes.fromhex(seed))


def _purge(sb: Sandbox, signer: Signer, **data: Any) -> dict[str, Any]:
    sid = sb.service_ids[0]
    body: dict[str, Any] = {
        "event_type": "SERVICE_REVOKED",
        "app_id": sb.app_id,
        "service_id": sid,
        "service_public_key": sb.service(sid).public_key.hex(),
        "timestamp": now(),
        "nonce": fresh_nonce(),
        "context": "purge",
    }
    body.update(data)
    return sign_envelope({k: v for k, v in body.items() if v is not None}, signer).to_json()


def test_unbind_purges_auth_and_billing(sb: Sandbox, http: httpx.Client, master: Signer) -> None:
    """A revocation delivers one registry-signed SERVICE_REVOKED purge to Auth and to Billing."""
    sid = sb.service_ids[0]
    assert send_unbind(http, sb, sid, unbind_request(sb, sid, master)).status_code == 200
    purges = sb.purges()
    assert [p["target"] for p in purges] == ["auth", "billing"]
    for purge in purges:
        envelope = verify_envelope(
            parse_envelope(purge["envelope"]), sb.registry_public_key, context="purge"
        )
        assert {k: envelope.data[k] for k in ("event_type", "app_id", "service_id")} == {
            "event_type": "SERVICE_REVOKED",
            "app_id": sb.app_id,
            "service_id": sid,
        }
        assert envelope.data["service_public_key"] == sb.service(sid).public_key.hex()
        assert purge["service_public_key"] == sb.service(sid).public_key.hex()
    assert purges[0]["nonce"] != purges[1]["nonce"]
    assert [(d["target"], d["status"], d["detail"]) for d in sb.deliveries()] == [
        ("auth", "delivered", None),
        ("billing", "delivered", None),
    ]


@pytest.mark.parametrize("target", ["auth", "billing"])
def test_receiver_accepts_registry_signed_purge(
    target: str, sb: Sandbox, http: httpx.Client
) -> None:
    """Each receiver answers 200 to a genuine purge and records it."""
    response = http.post(
        f"{sb.registry_url}/{target}/v1/purge", json=_purge(sb, _registry_signer(sb))
    )
    assert response.status_code == 200
    assert [p["target"] for p in sb.purges()] == [target]


@pytest.mark.parametrize("target", ["auth", "billing"])
def test_purge_signed_by_other_key_is_invalid_signature(
    target: str, sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """A purge not signed by the registry key (here: the app's master key) is refused."""
    before = sb.snapshot()
    response = http.post(f"{sb.registry_url}/{target}/v1/purge", json=_purge(sb, master))
    assert_rejected(response, status=401, code="invalid_signature", sb=sb, before=before)


def test_purge_with_other_context_is_invalid_signature(sb: Sandbox, http: httpx.Client) -> None:
    """A registry-signed message of another context is not a purge."""
    before = sb.snapshot()
    envelope = _purge(sb, _registry_signer(sb), context="revocation_record")
    response = http.post(f"{sb.auth_url}/v1/purge", json=envelope)
    assert_rejected(response, status=401, code="invalid_signature", sb=sb, before=before)


def test_replayed_purge_is_replayed_nonce(sb: Sandbox, http: httpx.Client) -> None:
    """The same purge twice at one receiver: the second is replayed_nonce."""
    envelope = _purge(sb, _registry_signer(sb))
    assert http.post(f"{sb.auth_url}/v1/purge", json=envelope).status_code == 200
    before = sb.snapshot()
    response = http.post(f"{sb.auth_url}/v1/purge", json=envelope)
    assert_rejected(response, status=401, code="replayed_nonce", sb=sb, before=before)


def test_stale_purge_is_refused(sb: Sandbox, http: httpx.Client) -> None:
    """A purge more than 300 s old is stale_request."""
    before = sb.snapshot()
    envelope = _purge(sb, _registry_signer(sb), timestamp=now() - 310)
    response = http.post(f"{sb.billing_url}/v1/purge", json=envelope)
    assert_rejected(response, status=401, code="stale_request", sb=sb, before=before)


@pytest.mark.parametrize(
    "data",
    [
        {"event_type": "SERVICE_ADDED"},
        {"event_type": None},
        {"service_public_key": "ab"},
        {"service_public_key": None},
    ],
    ids=["other-event", "no-event", "short-key", "no-key"],
)
def test_purge_with_bad_fields_is_malformed(
    data: dict[str, Any], sb: Sandbox, http: httpx.Client
) -> None:
    """A registry-signed purge without SERVICE_REVOKED or a 32-byte key is malformed."""
    before = sb.snapshot()
    response = http.post(f"{sb.auth_url}/v1/purge", json=_purge(sb, _registry_signer(sb), **data))
    assert_rejected(response, status=400, code="malformed_request", sb=sb, before=before)


def test_purge_to_unknown_core_service_is_404(sb: Sandbox, http: httpx.Client) -> None:
    """Only auth and billing receive purges."""
    response = http.post(f"{sb.registry_url}/dns/v1/purge", json=_purge(sb, Signer(os.urandom(32))))
    assert response.status_code == 404
