"""Fault injection: each provider and registry fault does what docs/sandbox.md says."""

from __future__ import annotations

import time

import httpx
import pytest

from omictl.core.envelope import Signer
from omictl.core.messages import verify_receipt, verify_revocation_record
from omictl.errors import UsageError, VerificationError
from omictl.sandbox import Faults, Sandbox
from tests.sandbox.helpers import (
    problem_code,
    receipt_for,
    send_delete,
    send_unbind,
    termination,
    unbind_request,
)

# --------------------------------------------------------------------------- provider


def test_unavailable_closes_without_answer_and_wipes_nothing(
    sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """`unavailable`: the connection closes with no answer; the tenant is untouched."""
    sid = sb.service_ids[0]
    sb.faults.provider("unavailable", service_id=sid, times=1)
    with pytest.raises(httpx.RemoteProtocolError):
        send_delete(http, sb, sid, termination(sb, sid, master))
    assert sb.tenant(sid)["terminated_at"] is None
    assert send_delete(http, sb, sid, termination(sb, sid, master)).status_code == 200
    assert sb.delete_count(sid) == 2


def test_status_503_fires_exactly_n_times(sb: Sandbox, http: httpx.Client, master: Signer) -> None:
    """`status_503` x2: two 503 problems (Retry-After: 0), then the real receipt."""
    sid = sb.service_ids[0]
    sb.faults.provider("status_503", service_id=sid, times=2)
    statuses = []
    for _ in range(3):
        response = send_delete(http, sb, sid, termination(sb, sid, master))
        statuses.append(response.status_code)
        if response.status_code == 503:
            assert problem_code(response) == "service_unavailable"
            assert response.headers["retry-after"] == "0"
            assert sb.tenant(sid)["terminated_at"] is None
    assert statuses == [503, 503, 200]
    assert sb.faults.rules == []


def test_slow_delays_the_answer(sb: Sandbox, http: httpx.Client, master: Signer) -> None:
    """`slow` 0.3 s: a client with a 0.1 s read timeout times out."""
    sid = sb.service_ids[0]
    sb.faults.provider("slow", service_id=sid, times=1, seconds=0.3)
    with pytest.raises(httpx.ReadTimeout):
        http.request(
            "DELETE",
            sb.service(sid).endpoint_url,
            json=termination(sb, sid, master),
            timeout=0.1,
        )


def test_slow_then_answers_normally(sb: Sandbox, http: httpx.Client, master: Signer) -> None:
    """`slow` 0.2 s: a patient client gets the real receipt after the delay."""
    sid = sb.service_ids[0]
    sb.faults.provider("slow", service_id=sid, times=1, seconds=0.2)
    started = time.monotonic()
    response = send_delete(http, sb, sid, termination(sb, sid, master))
    assert time.monotonic() - started >= 0.2
    assert response.json()["data"]["status"] == "success"


def test_non_json_answers_html(sb: Sandbox, http: httpx.Client, master: Signer) -> None:
    """`non_json`: 200 with an HTML body; nothing wiped."""
    sid = sb.service_ids[0]
    sb.faults.provider("non_json", service_id=sid, times=1)
    response = send_delete(http, sb, sid, termination(sb, sid, master))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.text.startswith("<html>")
    assert sb.tenant(sid)["terminated_at"] is None


def test_oversize_answers_more_than_one_mib(
    sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """`oversize`: a 200 JSON body over 1 MiB; nothing wiped."""
    sid = sb.service_ids[0]
    sb.faults.provider("oversize", service_id=sid, times=1)
    response = send_delete(http, sb, sid, termination(sb, sid, master))
    assert response.status_code == 200
    assert len(response.content) > 1024 * 1024
    assert sb.tenant(sid)["terminated_at"] is None


def test_redirect_points_elsewhere_on_loopback(
    sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """`redirect`: 302 to another loopback URL; nothing wiped."""
    sid = sb.service_ids[0]
    sb.faults.provider("redirect", service_id=sid, times=1)
    response = send_delete(http, sb, sid, termination(sb, sid, master))
    assert response.status_code == 302
    assert response.headers["location"] == f"{sb.registry_url}/elsewhere/{sid}"
    assert sb.tenant(sid)["terminated_at"] is None


def test_forged_receipt_fails_verification_but_tenant_is_wiped(
    sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """`forged_receipt`: the receipt is signed by a random key; the stored one is genuine."""
    sid = sb.service_ids[0]
    sb.faults.provider("forged_receipt", service_id=sid, times=1)
    forged = receipt_for(http, sb, sid, master)
    with pytest.raises(VerificationError):
        verify_receipt(
            forged, service_public_key=sb.service(sid).public_key, app_id=sb.app_id, service_id=sid
        )
    genuine = receipt_for(http, sb, sid, master)
    assert genuine == sb.tenant(sid)["receipt"]
    assert genuine["data"] == forged["data"]
    assert genuine["signature"] != forged["signature"]


def test_wrong_service_receipt_names_a_sibling(
    sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """`wrong_service_receipt`: validly signed by the service key, naming another service."""
    sid = sb.service_ids[0]
    sb.faults.provider("wrong_service_receipt", service_id=sid, times=1)
    receipt = receipt_for(http, sb, sid, master)
    assert receipt["data"]["service_id"] == sb.service_ids[1]
    with pytest.raises(VerificationError, match="termination receipt is for"):
        verify_receipt(
            receipt, service_public_key=sb.service(sid).public_key, app_id=sb.app_id, service_id=sid
        )


def test_failed_status_receipt_says_failure(
    sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """`failed_status_receipt`: validly signed by the service key with status "failure"."""
    sid = sb.service_ids[0]
    sb.faults.provider("failed_status_receipt", service_id=sid, times=1)
    receipt = receipt_for(http, sb, sid, master)
    assert receipt["data"]["status"] == "failure"
    with pytest.raises(VerificationError, match="not 'success'"):
        verify_receipt(
            receipt, service_public_key=sb.service(sid).public_key, app_id=sb.app_id, service_id=sid
        )


def test_lost_receipt_wipes_then_drops_and_retry_gets_original(
    sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """`lost_receipt`: wiped but no answer; the retry gets the original receipt."""
    sid = sb.service_ids[0]
    sb.faults.provider("lost_receipt", service_id=sid, times=1)
    with pytest.raises(httpx.RemoteProtocolError):
        send_delete(http, sb, sid, termination(sb, sid, master))
    assert sb.tenant(sid)["terminated_at"] is not None
    assert receipt_for(http, sb, sid, master) == sb.tenant(sid)["receipt"]


def test_global_fault_hits_every_service(sb: Sandbox, http: httpx.Client, master: Signer) -> None:
    """A fault armed without a service id applies to every provider."""
    sb.faults.provider("status_503")
    codes = [
        send_delete(http, sb, s, termination(sb, s, master)).status_code for s in sb.service_ids
    ]
    assert codes == [503, 503, 503]


def test_service_fault_wins_over_global(sb: Sandbox, http: httpx.Client, master: Signer) -> None:
    """A fault armed for one service is taken before a global one."""
    a, b = sb.service_ids[:2]
    sb.faults.provider("status_503", times=1).provider("status_503", service_id=a, times=1)
    assert send_delete(http, sb, a, termination(sb, a, master)).status_code == 503
    assert send_delete(http, sb, b, termination(sb, b, master)).status_code == 503
    assert send_delete(http, sb, a, termination(sb, a, master)).status_code == 200


def test_clear_disarms(sb: Sandbox, http: httpx.Client, master: Signer) -> None:
    """clear() removes armed faults of the given side."""
    sid = sb.service_ids[0]
    sb.faults.provider("status_503").registry("down")
    sb.faults.clear("provider")
    assert send_delete(http, sb, sid, termination(sb, sid, master)).status_code == 200
    assert [r.mode for r in sb.faults.rules] == ["down"]


@pytest.mark.parametrize(
    ("side", "mode", "times"),
    [("provider", "explode", None), ("registry", "slow", None), ("provider", "slow", 0)],
)
def test_bad_fault_is_usage_error(side: str, mode: str, times: int | None) -> None:
    """Unknown modes and counts below 1 are refused."""
    faults = Faults()
    arm = faults.provider if side == "provider" else faults.registry
    with pytest.raises(UsageError):
        arm(mode, times=times)


# --------------------------------------------------------------------------- registry


def test_registry_503_covers_every_endpoint_n_times(sb: Sandbox, http: httpx.Client) -> None:
    """Registry `status_503` x2: two 503s on any /v1 endpoint, then normal answers."""
    sb.faults.registry("status_503", times=2)
    assert http.get(f"{sb.registry_url}/v1/registry").status_code == 503
    assert http.get(f"{sb.registry_url}/v1/apps/{sb.app_id}").status_code == 503
    assert http.get(f"{sb.registry_url}/v1/apps/{sb.app_id}/services").status_code == 200


def test_unbind_503_only_hits_unbind(sb: Sandbox, http: httpx.Client, master: Signer) -> None:
    """`unbind_503` x1: lookups answer, the unbind is 503 once, then it succeeds."""
    sid = sb.service_ids[0]
    sb.faults.registry("unbind_503", times=1)
    assert http.get(f"{sb.registry_url}/v1/apps/{sb.app_id}/services/{sid}").status_code == 200
    response = send_unbind(http, sb, sid, unbind_request(sb, sid, master))
    assert response.status_code == 503
    assert problem_code(response) == "service_unavailable"
    assert sb.binding_status(sid) == "ACTIVE"
    assert send_unbind(http, sb, sid, unbind_request(sb, sid, master)).status_code == 200


def test_down_refuses_unbind_until_cleared(sb: Sandbox, http: httpx.Client, master: Signer) -> None:
    """`down`: every unbind is 503 until the fault is cleared."""
    sid = sb.service_ids[0]
    sb.faults.registry("down")
    codes = [
        send_unbind(http, sb, sid, unbind_request(sb, sid, master)).status_code for _ in range(3)
    ]
    assert codes == [503, 503, 503]
    assert sb.binding_status(sid) == "ACTIVE"
    sb.faults.clear("registry", "down")
    assert send_unbind(http, sb, sid, unbind_request(sb, sid, master)).status_code == 200


def test_revoked_before_unbind_lies_in_lookups_only(sb: Sandbox, http: httpx.Client) -> None:
    """`revoked_before_unbind`: the binding GET says REVOKED while the state is ACTIVE."""
    sid = sb.service_ids[0]
    sb.faults.registry("revoked_before_unbind", service_id=sid, times=1)
    binding = http.get(f"{sb.registry_url}/v1/apps/{sb.app_id}/services/{sid}").json()
    assert binding["status"] == "REVOKED"
    assert isinstance(binding["revoked_at"], int)
    assert sb.binding_status(sid) == "ACTIVE"
    again = http.get(f"{sb.registry_url}/v1/apps/{sb.app_id}/services/{sid}").json()
    assert again["status"] == "ACTIVE"


def test_record_for_other_service_fails_verification(
    sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """`record_for_other_service`: revoked, but the signed record names another service."""
    sid = sb.service_ids[0]
    sb.faults.registry("record_for_other_service", times=1)
    response = send_unbind(http, sb, sid, unbind_request(sb, sid, master))
    assert response.json()["data"]["service_id"] == f"{sid}-other"
    with pytest.raises(VerificationError, match="revocation record is for"):
        verify_revocation_record(
            response.json(),
            registry_public_key=sb.registry_public_key,
            app_id=sb.app_id,
            service_id=sid,
        )
    assert sb.binding_status(sid) == "REVOKED"
    assert sb.revocation_record(sid)["data"]["service_id"] == sid  # type: ignore[index]


def test_unknown_purge_targets_adds_a_target(
    sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """`unknown_purge_targets`: the record's propagation lists an extra unknown target."""
    sid = sb.service_ids[0]
    sb.faults.registry("unknown_purge_targets", times=1)
    response = send_unbind(http, sb, sid, unbind_request(sb, sid, master))
    assert [p["target"] for p in response.json()["data"]["propagation"]] == [
        "auth",
        "billing",
        "dns",
    ]
    assert [p["target"] for p in sb.purges()] == ["auth", "billing"]


def test_purge_target_down_records_failure_and_still_revokes(
    sb: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """`purge_target_down`: Billing fails (recorded with detail); the revocation stands."""
    sid = sb.service_ids[0]
    sb.faults.registry("purge_target_down", times=1)
    response = send_unbind(http, sb, sid, unbind_request(sb, sid, master))
    assert response.status_code == 200
    assert response.json()["data"]["propagation"] == [
        {"target": "auth", "status": "delivered"},
        {"target": "billing", "status": "failed", "detail": "HTTP 503"},
    ]
    assert sb.binding_status(sid) == "REVOKED"
    assert [p["target"] for p in sb.purges()] == ["auth"]
    assert sb.revocation_record(sid) == response.json()
