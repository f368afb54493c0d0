"""Registry unbind (PROTOCOL.md section 3): success, every rejection, and the check order."""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest

from omictl.core.envelope import Signer, sign_envelope
from omictl.core.messages import verify_revocation_record
from omictl.sandbox import Sandbox
from tests.sandbox.helpers import (
    PROBLEM,
    assert_rejected,
    now,
    receipt_for,
    send_unbind,
    unbind_request,
)

UNKNOWN_APP = "org.omiappreg.nobody.none.abcdef"


def _post_raw(
    http: httpx.Client, sb: Sandbox, body: bytes, content_type: str = "application/json"
) -> httpx.Response:
    return http.post(
        f"{sb.registry_url}/v1/apps/{sb.app_id}/services/{sb.service_ids[0]}/unbind",
        content=body,
        headers={"Content-Type": content_type},
    )


def _receipt_signed_by(sb: Sandbox, signer: Signer, **data: Any) -> dict[str, Any]:
    body = {
        "app_id": sb.app_id,
        "service_id": sb.service_ids[0],
        "status": "success",
        "message": "Instance purged",
        "receipt_id": "RCPT-TEST",
        **data,
    }
    return sign_envelope(body, signer).to_json()


# --------------------------------------------------------------------------- success


def test_unbind_with_receipt_revokes_and_answers_signed_record(
    sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """A valid unbind with the provider's receipt answers a registry-signed REVOKED record."""
    sid = sb.service_ids[0]
    receipt = receipt_for(http, sb, sid, master)
    response = send_unbind(http, sb, sid, unbind_request(sb, sid, master, receipt))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    record = verify_revocation_record(
        response.json(),
        registry_public_key=sb.registry_public_key,
        app_id=sb.app_id,
        service_id=sid,
    )
    assert record.receipt_id == receipt["data"]["receipt_id"]
    assert [p.to_json() for p in record.propagation] == [
        {"target": "auth", "status": "delivered"},
        {"target": "billing", "status": "delivered"},
    ]
    assert sb.binding_status(sid) == "REVOKED"
    assert sb.stored_receipt(sid) == receipt
    assert sb.revocation_record(sid) == response.json()


def test_unbind_without_receipt_has_null_receipt_id(
    sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """Without provider_receipt the revocation still happens and receipt_id is null."""
    sid = sb.service_ids[0]
    response = send_unbind(http, sb, sid, unbind_request(sb, sid, master))
    assert response.status_code == 200
    assert response.json()["data"]["receipt_id"] is None
    assert sb.stored_receipt(sid) is None
    assert sb.binding_status(sid) == "REVOKED"


def test_null_receipt_is_no_receipt(sb: Sandbox, http: httpx.Client, master: Signer) -> None:
    """provider_receipt: null is read as "no receipt", not as a malformed one."""
    sid = sb.service_ids[0]
    envelope = unbind_request(sb, sid, master)
    envelope = sign_envelope({**envelope["data"], "provider_receipt": None}, master).to_json()
    response = send_unbind(http, sb, sid, envelope)
    assert response.status_code == 200
    assert response.json()["data"]["receipt_id"] is None


def test_revoked_binding_leaves_active_listing(
    sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """After unbind the binding keeps its record but drops out of ?status=ACTIVE."""
    sid = sb.service_ids[0]
    assert send_unbind(http, sb, sid, unbind_request(sb, sid, master)).status_code == 200
    binding = http.get(f"{sb.registry_url}/v1/apps/{sb.app_id}/services/{sid}").json()
    assert binding["status"] == "REVOKED"
    assert binding["revoked_at"] == sb.revocation_record(sid)["data"]["revoked_at"]  # type: ignore[index]
    active = http.get(f"{sb.registry_url}/v1/apps/{sb.app_id}/services?status=ACTIVE").json()
    assert [b["service_id"] for b in active["services"]] == sb.service_ids[1:]


def test_upper_case_signature_hex_is_accepted(
    sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """Readers accept upper-case hex (PROTOCOL.md section 1)."""
    sid = sb.service_ids[0]
    envelope = unbind_request(sb, sid, master)
    envelope["signature"] = envelope["signature"].upper()
    assert send_unbind(http, sb, sid, envelope).status_code == 200


# --------------------------------------------------------------------------- malformed_request


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'"\xff"', b"[]", b"", b'{"version":"1.0","version":"1.0"}', b'{"a": NaN}'],
    ids=["not-json", "not-utf8", "array", "empty", "duplicate-member", "nan"],
)
def test_unparseable_body_is_malformed(body: bytes, sb: Sandbox, http: httpx.Client) -> None:
    """A body that is not one strict JSON object is malformed_request (400)."""
    before = sb.snapshot()
    assert_rejected(
        _post_raw(http, sb, body), status=400, code="malformed_request", sb=sb, before=before
    )


def test_wrong_content_type_is_malformed(sb: Sandbox, http: httpx.Client, master: Signer) -> None:
    """A signed body sent as text/plain is malformed_request."""
    body = httpx.Request("POST", "http://x", json=unbind_request(sb, sb.service_ids[0], master))
    before = sb.snapshot()
    response = _post_raw(http, sb, body.content, content_type="text/plain")
    assert_rejected(response, status=400, code="malformed_request", sb=sb, before=before)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: {k: v for k, v in e.items() if k != "signature"},
        lambda e: {**e, "signature": "zz" * 64},
        lambda e: {**e, "signature": e["signature"][:-2]},
        lambda e: {**e, "data": "not an object"},
        lambda e: {**e, "public_key_hint": 7},
    ],
    ids=["no-signature", "signature-not-hex", "signature-short", "data-not-object", "hint-int"],
)
def test_bad_envelope_shape_is_malformed(
    mutate: Any, sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """An envelope missing or mistyping a member is malformed_request."""
    sid = sb.service_ids[0]
    before = sb.snapshot()
    response = send_unbind(http, sb, sid, mutate(unbind_request(sb, sid, master)))
    assert_rejected(response, status=400, code="malformed_request", sb=sb, before=before)


@pytest.mark.parametrize(
    "data",
    [
        {"nonce": None},
        {"nonce": "short"},
        {"nonce": "x" * 16 + "!"},
        {"timestamp": None},
        {"timestamp": "1705412600"},
        {"timestamp": True},
        {"app_id": None},
    ],
    ids=[
        "no-nonce",
        "short-nonce",
        "nonce-bad-char",
        "no-timestamp",
        "timestamp-string",
        "timestamp-bool",
        "no-app-id",
    ],
)
def test_signed_but_mistyped_field_is_malformed(
    data: dict[str, Any], sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """A correctly signed unbind with a missing or mistyped field is malformed_request."""
    sid = sb.service_ids[0]
    before = sb.snapshot()
    response = send_unbind(http, sb, sid, unbind_request(sb, sid, master, **data))
    assert_rejected(response, status=400, code="malformed_request", sb=sb, before=before)


def test_float_timestamp_is_malformed(sb: Sandbox, http: httpx.Client, master: Signer) -> None:
    """Timestamps are integer seconds: 1705412600.5 is malformed_request."""
    sid = sb.service_ids[0]
    before = sb.snapshot()
    response = send_unbind(http, sb, sid, unbind_request(sb, sid, master, timestamp=now() + 0.5))
    assert_rejected(response, status=400, code="malformed_request", sb=sb, before=before)


# --------------------------------------------------------------------------- unsupported_version


@pytest.mark.parametrize("version", ["2.0", "1", 1.0, None], ids=["2.0", "1", "float", "null"])
def test_other_version_is_unsupported(
    version: Any, sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """Any version but "1.0" is unsupported_version (400)."""
    sid = sb.service_ids[0]
    before = sb.snapshot()
    envelope = {**unbind_request(sb, sid, master), "version": version}
    response = send_unbind(http, sb, sid, envelope)
    assert_rejected(response, status=400, code="unsupported_version", sb=sb, before=before)


def test_missing_version_is_malformed(sb: Sandbox, http: httpx.Client, master: Signer) -> None:
    """An envelope without version is malformed_request."""
    sid = sb.service_ids[0]
    envelope = {k: v for k, v in unbind_request(sb, sid, master).items() if k != "version"}
    before = sb.snapshot()
    response = send_unbind(http, sb, sid, envelope)
    assert_rejected(response, status=400, code="malformed_request", sb=sb, before=before)


# --------------------------------------------------------------------------- invalid_signature


def test_non_master_key_is_invalid_signature(sb: Sandbox, http: httpx.Client) -> None:
    """An unbind signed by any key but the app's master key is invalid_signature (401)."""
    sid = sb.service_ids[0]
    before = sb.snapshot()
    response = send_unbind(http, sb, sid, unbind_request(sb, sid, Signer(os.urandom(32))))
    assert_rejected(response, status=401, code="invalid_signature", sb=sb, before=before)


def test_service_key_is_not_a_master_key(sb: Sandbox, http: httpx.Client, master: Signer) -> None:
    """A sandbox-internal key (the registry's) cannot sign an unbind either."""
    sid = sb.service_ids[0]
    seed = sb.snapshot()["meta"]
    registry_seed = next(r["value"] for r in seed if r["key"] == "registry_seed")
    registry = Signer(bytes.fromhex(registry_seed))
    before = sb.snapshot()
    response = send_unbind(http, sb, sid, unbind_request(sb, sid, registry))
    assert_rejected(response, status=401, code="invalid_signature", sb=sb, before=before)


def test_tampered_data_is_invalid_signature(
    sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """Changing one signed member after signing breaks the signature."""
    sid = sb.service_ids[0]
    envelope = unbind_request(sb, sid, master)
    envelope["data"]["timestamp"] += 1
    before = sb.snapshot()
    response = send_unbind(http, sb, sid, envelope)
    assert_rejected(response, status=401, code="invalid_signature", sb=sb, before=before)


@pytest.mark.parametrize(
    "context", ["permanent_termination", "purge", "revocation_record", "Decommission", None]
)
def test_other_context_is_invalid_signature(
    context: str | None, sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """A master-signed message for another step (or none) is invalid_signature."""
    sid = sb.service_ids[0]
    before = sb.snapshot()
    response = send_unbind(http, sb, sid, unbind_request(sb, sid, master, context=context))
    body = assert_rejected(response, status=401, code="invalid_signature", sb=sb, before=before)
    assert "context" in body["detail"]


def test_unbind_signed_for_another_service_is_invalid_signature(
    sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """A valid unbind of service B posted to service A's URL authorizes nothing."""
    a, b = sb.service_ids[:2]
    before = sb.snapshot()
    response = send_unbind(http, sb, a, unbind_request(sb, b, master))
    assert_rejected(response, status=401, code="invalid_signature", sb=sb, before=before)
    assert sb.binding_status(b) == "ACTIVE"


def test_unbind_signed_for_another_app_is_invalid_signature(
    sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """The signed app_id must be the app in the URL."""
    sid = sb.service_ids[0]
    before = sb.snapshot()
    response = send_unbind(http, sb, sid, unbind_request(sb, sid, master, app_id=UNKNOWN_APP))
    assert_rejected(response, status=401, code="invalid_signature", sb=sb, before=before)


def test_other_apps_master_key_is_invalid_signature(
    sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """Another registered app's master key cannot unbind this app's service."""
    other = Signer(os.urandom(32))
    sb.add_app(other.public_key, services=1)
    sid = sb.service_ids[0]
    before = sb.snapshot()
    response = send_unbind(http, sb, sid, unbind_request(sb, sid, other))
    assert_rejected(response, status=401, code="invalid_signature", sb=sb, before=before)


# --------------------------------------------------------------------------- stale, replay


@pytest.mark.parametrize(
    "offset", [-310, 310, -100_000], ids=["past", "future", "far-past"]
)  # wall clock: margin for a tick; exact edges are in test_clock.py
def test_timestamp_outside_window_is_stale(
    offset: int, sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """A timestamp more than 300 s from the registry's clock is stale_request (401)."""
    sid = sb.service_ids[0]
    before = sb.snapshot()
    response = send_unbind(http, sb, sid, unbind_request(sb, sid, master, timestamp=now() + offset))
    assert_rejected(response, status=401, code="stale_request", sb=sb, before=before)


def test_replayed_unbind_is_replayed_nonce(sb: Sandbox, http: httpx.Client, master: Signer) -> None:
    """The exact same signed unbind sent twice: the second is replayed_nonce (401)."""
    sid = sb.service_ids[0]
    envelope = unbind_request(sb, sid, master)
    assert send_unbind(http, sb, sid, envelope).status_code == 200
    before = sb.snapshot()
    assert_rejected(
        send_unbind(http, sb, sid, envelope),
        status=401,
        code="replayed_nonce",
        sb=sb,
        before=before,
    )


def test_nonce_reused_for_another_service_is_replayed(
    sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """Replay is per (signer key, nonce): a new message with a used nonce is refused."""
    a, b = sb.service_ids[:2]
    first = unbind_request(sb, a, master)
    assert send_unbind(http, sb, a, first).status_code == 200
    before = sb.snapshot()
    second = unbind_request(sb, b, master, nonce=first["data"]["nonce"])
    assert_rejected(
        send_unbind(http, sb, b, second), status=401, code="replayed_nonce", sb=sb, before=before
    )
    assert sb.binding_status(b) == "ACTIVE"


def test_rejected_request_does_not_burn_its_nonce(
    sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """Only accepted requests are remembered: a nonce from a rejected unbind can be used."""
    sid = sb.service_ids[0]
    rejected = unbind_request(sb, sid, master, provider_receipt="not a receipt")
    assert send_unbind(http, sb, sid, rejected).status_code == 422
    again = unbind_request(sb, sid, master, nonce=rejected["data"]["nonce"])
    assert send_unbind(http, sb, sid, again).status_code == 200


# --------------------------------------------------------------------------- unknown app/service


def test_unknown_app_is_404(sb: Sandbox, http: httpx.Client, master: Signer) -> None:
    """An unbind for an app the registry does not know is unknown_app (404)."""
    sid = sb.service_ids[0]
    before = sb.snapshot()
    response = send_unbind(
        http, sb, sid, unbind_request(sb, sid, master, app_id=UNKNOWN_APP), app_id=UNKNOWN_APP
    )
    assert_rejected(response, status=404, code="unknown_app", sb=sb, before=before)


def test_unknown_service_is_404(sb: Sandbox, http: httpx.Client, master: Signer) -> None:
    """An unbind for a service the app has no binding for is unknown_service (404)."""
    before = sb.snapshot()
    response = send_unbind(
        http, sb, "cms-article-999", unbind_request(sb, "cms-article-999", master)
    )
    assert_rejected(response, status=404, code="unknown_service", sb=sb, before=before)


def test_service_of_another_app_is_unknown_service(
    sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """A service bound to another app is not this app's service."""
    other = Signer(os.urandom(32))
    sb.add_app(other.public_key, services=1)
    foreign = sb.services(sb.add_app(other.public_key))[0].service_id
    before = sb.snapshot()
    response = send_unbind(http, sb, foreign, unbind_request(sb, foreign, master))
    assert_rejected(response, status=404, code="unknown_service", sb=sb, before=before)
    assert sb.binding_status(foreign) == "ACTIVE"


# --------------------------------------------------------------------------- already_revoked


def test_second_unbind_is_already_revoked_with_record(
    sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """A fresh unbind of a REVOKED binding is 409 carrying the existing signed record."""
    sid = sb.service_ids[0]
    first = send_unbind(http, sb, sid, unbind_request(sb, sid, master))
    assert first.status_code == 200
    before = sb.snapshot()
    response = send_unbind(http, sb, sid, unbind_request(sb, sid, master))
    body = assert_rejected(response, status=409, code="already_revoked", sb=sb, before=before)
    assert body["record"] == first.json()
    verify_revocation_record(
        body["record"],
        registry_public_key=sb.registry_public_key,
        app_id=sb.app_id,
        service_id=sid,
    )


# --------------------------------------------------------------------------- invalid_receipt


def test_receipt_signed_by_random_key_is_invalid_receipt(
    sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """A receipt not signed by the service key on file is invalid_receipt; still ACTIVE."""
    sid = sb.service_ids[0]
    forged = _receipt_signed_by(sb, Signer(os.urandom(32)))
    before = sb.snapshot()
    response = send_unbind(http, sb, sid, unbind_request(sb, sid, master, forged))
    assert_rejected(response, status=422, code="invalid_receipt", sb=sb, before=before)
    assert sb.binding_status(sid) == "ACTIVE"


def test_receipt_signed_by_master_key_is_invalid_receipt(
    sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """The app cannot vouch for its own wipe: a master-signed receipt is invalid_receipt."""
    sid = sb.service_ids[0]
    before = sb.snapshot()
    response = send_unbind(
        http, sb, sid, unbind_request(sb, sid, master, _receipt_signed_by(sb, master))
    )
    assert_rejected(response, status=422, code="invalid_receipt", sb=sb, before=before)


def test_sibling_services_genuine_receipt_is_invalid_receipt(
    sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """A real receipt from service B does not prove service A was wiped."""
    a, b = sb.service_ids[:2]
    receipt_b = receipt_for(http, sb, b, master)
    before = sb.snapshot()
    response = send_unbind(http, sb, a, unbind_request(sb, a, master, receipt_b))
    assert_rejected(response, status=422, code="invalid_receipt", sb=sb, before=before)
    assert sb.binding_status(a) == "ACTIVE"


@pytest.mark.parametrize(
    "receipt",
    ["RCPT-1", {"version": "1.0"}, {"version": "2.0", "data": {}, "signature": "00" * 64}],
    ids=["string", "no-data", "version-2"],
)
def test_unreadable_receipt_is_invalid_receipt(
    receipt: Any, sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """A receipt that is not a readable envelope is invalid_receipt (422), not 400."""
    sid = sb.service_ids[0]
    before = sb.snapshot()
    response = send_unbind(http, sb, sid, unbind_request(sb, sid, master, provider_receipt=receipt))
    assert_rejected(response, status=422, code="invalid_receipt", sb=sb, before=before)


def test_receipt_with_failure_status_is_invalid_receipt(
    sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """A receipt validly signed by the service but saying "failure" is invalid_receipt."""
    sid = sb.service_ids[0]
    sb.faults.provider("failed_status_receipt", service_id=sid, times=1)
    receipt = receipt_for(http, sb, sid, master)
    assert receipt["data"]["status"] == "failure"
    before = sb.snapshot()
    response = send_unbind(http, sb, sid, unbind_request(sb, sid, master, receipt))
    assert_rejected(response, status=422, code="invalid_receipt", sb=sb, before=before)


def test_receipt_naming_another_service_is_invalid_receipt(
    sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """A receipt signed by the right service key but naming another service is refused."""
    sid = sb.service_ids[0]
    sb.faults.provider("wrong_service_receipt", service_id=sid, times=1)
    receipt = receipt_for(http, sb, sid, master)
    assert receipt["data"]["service_id"] == sb.service_ids[1]
    before = sb.snapshot()
    response = send_unbind(http, sb, sid, unbind_request(sb, sid, master, receipt))
    assert_rejected(response, status=422, code="invalid_receipt", sb=sb, before=before)


# --------------------------------------------------------------------------- check order


def test_version_is_checked_before_app_lookup(
    sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """Version 2.0 to an unknown app: unsupported_version wins."""
    envelope = {**unbind_request(sb, "x-1", master), "version": "2.0"}
    response = send_unbind(http, sb, "x-1", envelope, app_id=UNKNOWN_APP)
    assert response.status_code == 400
    assert response.json()["type"] == "urn:omi:error:unsupported_version"


def test_app_is_looked_up_before_signature(sb: Sandbox, http: httpx.Client) -> None:
    """A badly signed unbind for an unknown app: unknown_app wins."""
    envelope = unbind_request(sb, "x-1", Signer(os.urandom(32)))
    response = send_unbind(http, sb, "x-1", envelope, app_id=UNKNOWN_APP)
    assert response.json()["type"] == "urn:omi:error:unknown_app"


def test_binding_is_looked_up_before_signature(sb: Sandbox, http: httpx.Client) -> None:
    """A badly signed unbind for an unknown service: unknown_service wins."""
    envelope = unbind_request(sb, "x-1", Signer(os.urandom(32)))
    response = send_unbind(http, sb, "x-1", envelope)
    assert response.json()["type"] == "urn:omi:error:unknown_service"


def test_signature_is_checked_before_freshness(sb: Sandbox, http: httpx.Client) -> None:
    """Stale and badly signed: invalid_signature wins."""
    sid = sb.service_ids[0]
    envelope = unbind_request(sb, sid, Signer(os.urandom(32)), timestamp=now() - 1000)
    response = send_unbind(http, sb, sid, envelope)
    assert response.json()["type"] == "urn:omi:error:invalid_signature"


def test_freshness_is_checked_before_replay(
    sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """A used nonce in a stale request: stale_request wins."""
    sid = sb.service_ids[0]
    first = unbind_request(sb, sid, master)
    assert send_unbind(http, sb, sid, first).status_code == 200
    stale = unbind_request(sb, sid, master, nonce=first["data"]["nonce"], timestamp=now() - 400)
    assert send_unbind(http, sb, sid, stale).json()["type"] == "urn:omi:error:stale_request"


def test_replay_is_checked_before_already_revoked(
    sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """The same unbind again after success: replayed_nonce, not already_revoked."""
    sid = sb.service_ids[0]
    envelope = unbind_request(sb, sid, master)
    assert send_unbind(http, sb, sid, envelope).status_code == 200
    assert send_unbind(http, sb, sid, envelope).json()["type"] == "urn:omi:error:replayed_nonce"


def test_already_revoked_is_checked_before_receipt(
    sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """A forged receipt for an already revoked binding: already_revoked wins."""
    sid = sb.service_ids[0]
    assert send_unbind(http, sb, sid, unbind_request(sb, sid, master)).status_code == 200
    forged = _receipt_signed_by(sb, Signer(os.urandom(32)))
    response = send_unbind(http, sb, sid, unbind_request(sb, sid, master, forged))
    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM
