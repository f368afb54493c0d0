"""Peers that lie with well-formed answers: wrong signer, wrong ids, hostile endpoints.

Hand-built peer (tests/hostile/peer.py) for lies the sandbox cannot tell, the sandbox's
own fault modes for the rest. Each test: exit code exact, nothing destructive sent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from omictl.core.envelope import Signer, sign_envelope
from tests.e2e.conftest import E2E
from tests.hostile.conftest import Hostile
from tests.hostile.peer import Reply, Request, problem

pytestmark = pytest.mark.e2e


def _signed_receipt(hostile: Hostile, signer: Signer) -> dict[str, Any]:
    return sign_envelope(hostile.fake.receipt_data(), signer).to_json()


def _rejected_kept(hostile: Hostile) -> list[dict[str, Any]]:
    root = hostile.home / "receipts" / "rejected"
    return [json.loads(p.read_text()) for p in sorted(root.rglob("*.json"))]


# --------------------------------------------------------------------------- the receipt


def test_receipt_signed_by_registry_key_rejected(hostile: Hostile) -> None:
    """A receipt signed by the registry key, not the service key: exit 5, no unbind."""
    receipt = _signed_receipt(hostile, hostile.fake.registry_signer)
    hostile.fake.overrides["delete"] = lambda _r: Reply(body=receipt)
    res = hostile.decommission()
    assert res.code == 5, res.err
    assert res.json()["error"]["code"] == "invalid_receipt"
    assert "(the service key on file in the registry)" in res.err
    assert hostile.fake.unbinds() == 0
    assert [k["answer"] for k in _rejected_kept(hostile)] == [receipt]


def test_receipt_signed_by_master_key_rejected(hostile: Hostile) -> None:
    """A receipt signed by the app's own master key (reflected): exit 5, no unbind."""
    receipt = _signed_receipt(hostile, hostile.master)
    hostile.fake.overrides["delete"] = lambda _r: Reply(body=receipt)
    res = hostile.decommission()
    assert res.code == 5, res.err
    assert res.json()["error"]["code"] == "invalid_receipt"
    assert hostile.fake.unbinds() == 0


def test_request_echoed_back_as_receipt_rejected(hostile: Hostile) -> None:
    """The signed DELETE body echoed back as the "receipt": exit 5, no unbind."""
    hostile.fake.overrides["delete"] = lambda r: Reply(body=r.body)
    res = hostile.decommission()
    assert res.code == 5, res.err
    assert res.json()["error"]["code"] == "invalid_receipt"
    assert hostile.fake.unbinds() == 0


def test_receipt_with_a_lone_surrogate_is_kept_and_rejected(hostile: Hostile) -> None:
    """A receipt holding "\\ud800" (valid JSON, not valid Unicode): exit 5, no unbind, and
    the answer is still kept and journalled (escaped), never an internal error."""
    data = json.dumps(hostile.fake.receipt_data(message="purged \ud800 \u00e9"))
    body = f'{{"version":"1.0","data":{data},"signature":"{"ab" * 64}"}}'.encode()
    hostile.fake.overrides["delete"] = lambda _r: Reply(body=body)
    res = hostile.decommission()
    assert res.code == 5, res.err
    assert res.json()["error"]["code"] == "invalid_receipt"
    assert hostile.fake.unbinds() == 0
    [kept] = _rejected_kept(hostile)
    assert kept["answer"]["data"]["message"] == "purged \ud800 \u00e9"
    assert "RFC 8785" in kept["reason"]  # refused for the surrogate, not the fake signature
    journal = hostile.home / "state" / hostile.app_id / f"{hostile.service_id}.journal"
    records = [json.loads(line) for line in journal.read_text(encoding="utf-8").splitlines()]
    assert records[-1]["phase"] == "receipt_rejected"
    assert records[-1]["set"]["rejected_receipt"]["data"]["message"] == "purged \ud800 \u00e9"
    assert "\\ud800" in journal.read_text(encoding="utf-8")  # escaped on disk
    del hostile.fake.overrides["delete"]  # the provider turns honest: the log still reads
    again = hostile.decommission()
    assert again.code == 0, again.err
    assert again.json()["status"] == "REVOKED"


# --------------------------------------------------------------------------- the registry


def test_binding_for_another_service_rejected(hostile: Hostile) -> None:
    """A binding answer naming another service: exit 5 before any DELETE."""
    hostile.fake.binding_patch = {"service_id": "cms-article-2"}
    res = hostile.decommission()
    assert res.code == 5, res.err
    assert "asked for org.omiappreg.hostile.test.a1b2c3/cms-article-1" in res.err
    assert hostile.fake.deletes() == 0
    assert hostile.fake.unbinds() == 0


def test_binding_for_another_app_rejected(hostile: Hostile) -> None:
    """A binding answer naming another app: exit 5 before any DELETE."""
    hostile.fake.binding_patch = {"app_id": "org.omiappreg.mallory.app.ffffff"}
    res = hostile.decommission()
    assert res.code == 5, res.err
    assert "registry answered with binding org.omiappreg.mallory.app.ffffff/" in res.err
    assert hostile.fake.deletes() == 0


def test_app_record_for_another_app_rejected(hostile: Hostile) -> None:
    """An app lookup answered for another app: exit 5 before any DELETE."""
    hostile.fake.overrides["app"] = lambda _r: Reply(
        body={
            "app_id": "org.omiappreg.mallory.app.ffffff",
            "master_public_key": hostile.master.public_key.hex(),
            "status": "ACTIVE",
        }
    )
    res = hostile.decommission()
    assert res.code == 5, res.err
    assert hostile.fake.deletes() == 0


def test_plain_http_endpoint_off_loopback_refused(hostile: Hostile) -> None:
    """A binding endpoint on http:// to a non-loopback host: exit 2, nothing sent anywhere."""
    hostile.fake.binding_patch = {"endpoint_url": "http://provider.example.invalid/api/v1"}
    res = hostile.decommission()
    assert res.code == 2, res.err
    assert "refusing plain http:// to provider.example.invalid" in res.err
    assert res.json()["error"]["code"] == "usage"
    assert hostile.fake.deletes() == 0
    assert hostile.fake.unbinds() == 0
    assert [r.method for r in hostile.fake.peer.requests] == ["GET", "GET", "GET"]


@pytest.mark.parametrize(
    "endpoint",
    [
        "file:///etc/passwd",
        "javascript:alert(1)",
        "data:application/json,{}",
        "ftp://127.0.0.1/api",
        "https://user:secret@127.0.0.1/api",
        "https://127.0.0.1/api?next=http://evil",
        "//127.0.0.1/api",
        "",
    ],
)
def test_hostile_endpoint_scheme_refused(hostile: Hostile, endpoint: str) -> None:
    """A binding endpoint that is not a plain http(s) URL: exit 5, clear error, nothing sent."""
    hostile.fake.binding_patch = {"endpoint_url": endpoint}
    res = hostile.decommission()
    assert res.code == 5, res.err
    assert res.json()["error"]["code"] == "protocol_error"
    assert "omictl: error: service endpoint" in res.err
    assert hostile.fake.deletes() == 0
    assert hostile.fake.unbinds() == 0


def test_changed_registry_key_stops_before_delete(hostile: Hostile) -> None:
    """A registry presenting another key than the pinned one: exit 5, no DELETE (MITM)."""
    pinned = Signer(bytes([9]) * 32).public_key.hex()
    assert hostile.cli("registry", "pin", hostile.fake.url, "--public-key", pinned).code == 0
    res = hostile.decommission()
    assert res.code == 5, res.err
    assert res.json()["error"]["code"] == "registry_key_mismatch"
    assert hostile.fake.deletes() == 0
    assert hostile.fake.unbinds() == 0


def test_record_signed_by_service_key_rejected(hostile: Hostile) -> None:
    """A revocation record signed by the service key, not the pinned registry key: exit 5."""
    fake = hostile.fake

    def unbind(_r: Request) -> Reply:
        fake.status = "REVOKED"
        return Reply(body=sign_envelope(fake.record_data(), fake.service_signer).to_json())

    fake.overrides["unbind"] = unbind
    res = hostile.decommission()
    assert res.code == 5, res.err
    assert res.json()["error"]["code"] == "invalid_signature"
    assert res.json()["revocation_record"] is None
    assert not list((hostile.home / "receipts").glob("*/*.json"))


def test_record_naming_another_receipt_rejected(hostile: Hostile) -> None:
    """A registry-signed record naming another receipt than the one sent: exit 5, no bundle."""
    fake = hostile.fake

    def unbind(_r: Request) -> Reply:
        fake.status = "REVOKED"
        data = fake.record_data(receipt_id="RCPT-SOMEONE-ELSE")
        return Reply(body=sign_envelope(data, fake.registry_signer).to_json())

    fake.overrides["unbind"] = unbind
    res = hostile.decommission()
    assert res.code == 5, res.err
    assert res.json()["error"]["code"] == "invalid_record"
    assert "names receipt 'RCPT-SOMEONE-ELSE'" in res.err
    assert not list((hostile.home / "receipts").glob("*/*.json"))


def test_already_revoked_409_with_forged_record_rejected(hostile: Hostile) -> None:
    """A 409 already_revoked whose record is signed by another key: exit 5, not success."""
    fake = hostile.fake
    forged = sign_envelope(fake.record_data(), Signer(bytes([7]) * 32)).to_json()
    fake.overrides["unbind"] = lambda _r: problem(
        "already_revoked", 409, "Already revoked", "revoked before", record=forged
    )
    res = hostile.decommission()
    assert res.code == 5, res.err
    assert res.json()["status"] == "FAILED"


def test_already_revoked_409_without_record_while_active_rejected(hostile: Hostile) -> None:
    """A 409 already_revoked with no record while the binding reads ACTIVE: exit 5."""
    hostile.fake.overrides["unbind"] = lambda _r: problem(
        "already_revoked", 409, "Already revoked", "trust me"
    )
    res = hostile.decommission()
    assert res.code == 5, res.err
    assert "still lists it ACTIVE" in res.err


def _listing(hostile: Hostile, *extra: dict[str, Any]) -> None:
    services = [hostile.fake.binding(), *({**hostile.fake.binding(), **e} for e in extra)]
    hostile.fake.overrides["services"] = lambda _r: Reply(
        body={"app_id": hostile.app_id, "services": services}
    )


def test_all_with_traversal_service_id_refused(hostile: Hostile) -> None:
    """--all over a listing with service id "../../x": exit 2 before any DELETE."""
    _listing(hostile, {"service_id": "../../../tmp/x"})
    res = hostile.cli("-o", "json", "decommission", hostile.app_id, "--all", "--yes")
    assert res.code == 2, res.err
    assert hostile.fake.deletes() == 0
    assert not (hostile.home / "tmp").exists()


def test_all_with_foreign_app_binding_refused(hostile: Hostile) -> None:
    """--all over a listing that slips in another app's binding: exit 5, no DELETE."""
    _listing(hostile, {"app_id": "org.omiappreg.mallory.app.ffffff", "service_id": "x-2"})
    res = hostile.cli("-o", "json", "decommission", hostile.app_id, "--all", "--yes")
    assert res.code == 5, res.err
    assert hostile.fake.deletes() == 0


# --------------------------------------------------------------------------- sandbox faults


def test_revoked_before_unbind_sends_nothing(e2e: E2E) -> None:
    """Binding GETs say REVOKED (unsigned) while ACTIVE: exit 0, nothing sent, no record."""
    sid = e2e.sandbox.service_ids[0]
    e2e.sandbox.faults.registry("revoked_before_unbind", service_id=sid)
    res = e2e.cli("-o", "json", "decommission", e2e.app_id, sid, "--yes")
    assert res.code == 0, res.err
    doc = res.json()
    assert (doc["status"], doc["already_revoked"]) == ("REVOKED", True)
    assert (doc["receipt"], doc["revocation_record"], doc["bundle"]) == (None, None, None)
    assert "no signed record is held on this machine" in res.err
    assert e2e.sandbox.delete_count(sid) == 0
    assert e2e.sandbox.unbind_count(sid) == 0
    # the residual risk, made visible: the registry's state says otherwise
    assert e2e.sandbox.binding_status(sid) == "ACTIVE"


def test_record_for_other_service_is_exit_5(e2e: E2E) -> None:
    """A registry-signed record naming another service: exit 5, no evidence archived."""
    sid = e2e.sandbox.service_ids[0]
    e2e.sandbox.faults.registry("record_for_other_service", service_id=sid, times=1)
    res = e2e.cli("-o", "json", "decommission", e2e.app_id, sid, "--yes")
    assert res.code == 5, res.err
    doc = res.json()
    assert doc["error"]["code"] == "invalid_record"
    assert f"not {e2e.app_id}/{sid}" in res.err
    assert doc["revocation_record"] is None
    assert e2e.sandbox.delete_count(sid) == 1
    assert not list((e2e.home / "receipts").glob("*/*.json"))
    # the result says the unbind was answered and the record refused, and keeps the answer
    steps = [(s["step"], s["status"]) for s in doc["steps"]]
    assert steps[-2:] == [("unbind", "done"), ("verify_record", "failed")]
    kept = Path(doc["steps"][-1]["data"]["kept_at"])
    assert kept.parent.parent.name == "rejected" and kept.name.endswith("--record.json")
    saved = json.loads(kept.read_text())
    assert saved["from"] == "registry"
    assert saved["answer"]["data"]["service_id"] == f"{sid}-other"
    assert str(kept) in doc["error"]["hint"] and "no second DELETE" in doc["error"]["hint"]
    assert "hint:" in res.err


def test_record_for_other_service_then_rerun_recovers(e2e: E2E) -> None:
    """After that exit 5, a re-run gets the genuine record from the 409: exit 0, one DELETE."""
    sid = e2e.sandbox.service_ids[0]
    e2e.sandbox.faults.registry("record_for_other_service", service_id=sid, times=1)
    assert e2e.cli("decommission", e2e.app_id, sid, "--yes").code == 5
    res = e2e.cli("-o", "json", "decommission", e2e.app_id, sid, "--yes")
    assert res.code == 0, res.err
    doc = res.json()
    assert doc["revocation_record"] == e2e.sandbox.revocation_record(sid)
    assert e2e.sandbox.delete_count(sid) == 1
    assert e2e.cli("receipts", "verify", doc["bundle"]).code == 0


def test_unknown_purge_targets_accepted_and_reported(e2e: E2E) -> None:
    """A signed record listing an unknown purge target: exit 0, the target reported as is."""
    sid = e2e.sandbox.service_ids[0]
    e2e.sandbox.faults.registry("unknown_purge_targets", service_id=sid, times=1)
    res = e2e.cli("-o", "json", "decommission", e2e.app_id, sid, "--yes")
    assert res.code == 0, res.err
    doc = res.json()
    assert doc["propagation"] == [
        {"target": "auth", "status": "delivered"},
        {"target": "billing", "status": "delivered"},
        {"target": "dns", "status": "delivered"},
    ]
    assert "purge: auth delivered, billing delivered, dns delivered" in res.err
    assert e2e.cli("receipts", "verify", doc["bundle"]).code == 0
    assert {p["target"] for p in e2e.sandbox.purges()} == {"auth", "billing"}
