"""Domain Service DELETE (PROTOCOL.md section 4): receipts, idempotence, every rejection."""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest

from omictl.core.envelope import Signer
from omictl.core.messages import verify_receipt
from omictl.sandbox import Sandbox
from tests.sandbox.helpers import (
    assert_rejected,
    now,
    send_delete,
    send_unbind,
    termination,
    unbind_request,
)


def test_delete_answers_receipt_signed_by_service_key(
    sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """A valid DELETE wipes the tenant and answers a receipt the service key verifies."""
    sid = sb.service_ids[0]
    response = send_delete(http, sb, sid, termination(sb, sid, master))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    receipt = verify_receipt(
        response.json(),
        service_public_key=sb.service(sid).public_key,
        app_id=sb.app_id,
        service_id=sid,
    )
    data = response.json()["data"]
    assert set(data) == {
        "app_id",
        "service_id",
        "status",
        "message",
        "receipt_id",
        "terminated_at",
        "data_handling",
    }
    assert (data["status"], data["message"], data["data_handling"]) == (
        "success",
        "Instance purged",
        "wipe",
    )
    assert receipt.receipt_id.startswith("RCPT-")
    tenant = sb.tenant(sid)
    assert (tenant["terminated_at"], tenant["data_handling"]) == (data["terminated_at"], "wipe")
    assert tenant["receipt"] == response.json()


def test_retain_is_recorded_in_receipt(sb: Sandbox, http: httpx.Client, master: Signer) -> None:
    """data_handling "retain" is honoured and echoed in the receipt."""
    sid = sb.service_ids[0]
    response = send_delete(http, sb, sid, termination(sb, sid, master, data_handling="retain"))
    assert response.json()["data"]["data_handling"] == "retain"
    assert sb.tenant(sid)["data_handling"] == "retain"


def test_missing_data_handling_means_wipe(sb: Sandbox, http: httpx.Client, master: Signer) -> None:
    """Without data_handling the protocol's default, "wipe", applies."""
    sid = sb.service_ids[0]
    response = send_delete(http, sb, sid, termination(sb, sid, master, data_handling=None))
    assert response.json()["data"]["data_handling"] == "wipe"


def test_repeated_delete_returns_original_receipt_bytes(
    sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """A second valid DELETE answers the original receipt, byte for byte."""
    sid = sb.service_ids[0]
    first = send_delete(http, sb, sid, termination(sb, sid, master))
    second = send_delete(http, sb, sid, termination(sb, sid, master, data_handling="retain"))
    assert second.status_code == 200
    assert second.content == first.content
    assert sb.tenant(sid)["data_handling"] == "wipe"
    assert sb.delete_count(sid) == 2


def test_delete_does_not_touch_the_binding(sb: Sandbox, http: httpx.Client, master: Signer) -> None:
    """The provider wipes; only the registry revokes."""
    sid = sb.service_ids[0]
    send_delete(http, sb, sid, termination(sb, sid, master))
    assert sb.binding_status(sid) == "ACTIVE"


def test_unknown_tenant_is_unknown_service(sb: Sandbox, http: httpx.Client, master: Signer) -> None:
    """A DELETE to a provider path with no tenant is unknown_service (404)."""
    before = sb.snapshot()
    response = http.request(
        "DELETE",
        f"{sb.registry_url}/providers/nope-1/api/v1",
        json=termination(sb, "nope-1", master),
    )
    assert_rejected(response, status=404, code="unknown_service", sb=sb, before=before)
    assert sb.delete_count("nope-1") == 1


def test_other_app_is_unknown_service(sb: Sandbox, http: httpx.Client) -> None:
    """The endpoint holds no tenant of another app, even a registered one."""
    other = Signer(os.urandom(32))
    other_app = sb.add_app(other.public_key)
    sid = sb.service_ids[0]
    before = sb.snapshot()
    response = send_delete(http, sb, sid, termination(sb, sid, other, app_id=other_app))
    assert_rejected(response, status=404, code="unknown_service", sb=sb, before=before)


def test_non_master_key_is_invalid_signature(sb: Sandbox, http: httpx.Client) -> None:
    """A DELETE signed by any key but the app's master key is refused; nothing is wiped."""
    sid = sb.service_ids[0]
    before = sb.snapshot()
    response = send_delete(http, sb, sid, termination(sb, sid, Signer(os.urandom(32))))
    assert_rejected(response, status=401, code="invalid_signature", sb=sb, before=before)
    assert sb.tenant(sid)["terminated_at"] is None


@pytest.mark.parametrize("context", ["decommission", "purge", None])
def test_other_context_is_invalid_signature(
    context: str | None, sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """A master-signed message for another step is not a termination request."""
    sid = sb.service_ids[0]
    before = sb.snapshot()
    response = send_delete(http, sb, sid, termination(sb, sid, master, context=context))
    assert_rejected(response, status=401, code="invalid_signature", sb=sb, before=before)


def test_delete_signed_for_another_service_is_invalid_signature(
    sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """A valid DELETE of service B sent to service A's endpoint wipes nothing."""
    a, b = sb.service_ids[:2]
    before = sb.snapshot()
    response = send_delete(http, sb, a, termination(sb, b, master))
    assert_rejected(response, status=401, code="invalid_signature", sb=sb, before=before)


@pytest.mark.parametrize("offset", [-310, 310])  # wall clock: margin for a tick
def test_stale_delete_is_refused(
    offset: int, sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """A DELETE more than 300 s off the provider's clock is stale_request."""
    sid = sb.service_ids[0]
    before = sb.snapshot()
    response = send_delete(http, sb, sid, termination(sb, sid, master, timestamp=now() + offset))
    assert_rejected(response, status=401, code="stale_request", sb=sb, before=before)


def test_replayed_delete_is_replayed_nonce(sb: Sandbox, http: httpx.Client, master: Signer) -> None:
    """The same signed DELETE twice: the second is replayed_nonce."""
    sid = sb.service_ids[0]
    envelope = termination(sb, sid, master)
    assert send_delete(http, sb, sid, envelope).status_code == 200
    before = sb.snapshot()
    response = send_delete(http, sb, sid, envelope)
    assert_rejected(response, status=401, code="replayed_nonce", sb=sb, before=before)


@pytest.mark.parametrize("handling", ["shred", "", "WIPE", 1, ["wipe"]])
def test_unknown_data_handling_is_malformed(
    handling: Any, sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """data_handling other than "wipe" or "retain" is malformed_request; nothing is wiped."""
    sid = sb.service_ids[0]
    before = sb.snapshot()
    response = send_delete(http, sb, sid, termination(sb, sid, master, data_handling=handling))
    assert_rejected(response, status=400, code="malformed_request", sb=sb, before=before)


def test_missing_app_id_is_malformed(sb: Sandbox, http: httpx.Client, master: Signer) -> None:
    """A DELETE without app_id is malformed_request."""
    sid = sb.service_ids[0]
    before = sb.snapshot()
    response = send_delete(http, sb, sid, termination(sb, sid, master, app_id=None))
    assert_rejected(response, status=400, code="malformed_request", sb=sb, before=before)


def test_delete_version_2_is_unsupported(sb: Sandbox, http: httpx.Client, master: Signer) -> None:
    """A DELETE envelope of version 2.0 is unsupported_version."""
    sid = sb.service_ids[0]
    before = sb.snapshot()
    envelope = {**termination(sb, sid, master), "version": "2.0"}
    response = send_delete(http, sb, sid, envelope)
    assert_rejected(response, status=400, code="unsupported_version", sb=sb, before=before)


def test_delete_without_body_is_malformed(sb: Sandbox, http: httpx.Client) -> None:
    """A bare DELETE (no JSON body) is malformed_request."""
    before = sb.snapshot()
    response = http.request("DELETE", sb.service(sb.service_ids[0]).endpoint_url)
    assert_rejected(response, status=400, code="malformed_request", sb=sb, before=before)


def test_delete_after_revocation_still_answers_receipt(
    sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """A provider revoked with --skip-provider can still be asked to wipe."""
    sid = sb.service_ids[0]
    assert send_unbind(http, sb, sid, unbind_request(sb, sid, master)).status_code == 200
    response = send_delete(http, sb, sid, termination(sb, sid, master))
    assert response.status_code == 200
    assert response.json()["data"]["status"] == "success"
