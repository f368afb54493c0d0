"""RegistryClient: lookups, key pinning (trust on first use), unbind and its record."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import respx

from omictl.errors import (
    ExitCode,
    ProtocolError,
    RemoteRejected,
    RemoteUnavailable,
    UsageError,
    VerificationError,
)
from omictl.transport.http import RetryPolicy
from omictl.transport.pins import PinStore
from omictl.transport.registry import AlreadyRevoked, RegistryClient, registry_status
from tests.transport.helpers import (
    APP_ID,
    OTHER_SIGNER,
    REGISTRY,
    REGISTRY_SIGNER,
    SERVICE_ID,
    SERVICE_SIGNER,
    problem,
    record,
    registry_info,
    sign_unbind,
)

UNBIND = f"{REGISTRY}/v1/apps/{APP_ID}/services/{SERVICE_ID}/unbind"
BINDING = {
    "app_id": APP_ID,
    "service_id": SERVICE_ID,
    "service_type": "CMS",
    "endpoint_url": "https://article.cms.example/api/v1",
    "public_key": SERVICE_SIGNER.public_key.hex(),
    "status": "ACTIVE",
    "revoked_at": None,
}


@pytest.fixture
def pins(tmp_path: Path) -> PinStore:
    """An empty pin store."""
    return PinStore(tmp_path / "known_registries.json")


@pytest.fixture
def registry(client: httpx.Client, policy: RetryPolicy, pins: PinStore) -> RegistryClient:
    """A client for REGISTRY with pinning on."""
    return RegistryClient(REGISTRY + "/", client=client, policy=policy, pins=pins)


def test_base_url_normalized(registry: RegistryClient) -> None:
    """The base URL is kept in normal form."""
    assert registry.base_url == REGISTRY


def test_plain_http_registry_refused(client: httpx.Client, policy: RetryPolicy) -> None:
    """A plain-http non-loopback registry is refused without insecure (exit 2)."""
    with pytest.raises(UsageError) as info:
        RegistryClient("http://registry.example", client=client, policy=policy, pins=None)
    assert info.value.exit_code == ExitCode.USAGE


def test_plain_http_registry_allowed_with_insecure(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy
) -> None:
    """With insecure=True a plain-http registry is used."""
    mock.get("http://registry.example/v1/registry").respond(200, json=registry_info())
    reg = RegistryClient(
        "http://registry.example", client=client, policy=policy, pins=None, insecure=True
    )
    assert reg.info().name == "Example Registry"


def test_info(mock: respx.MockRouter, registry: RegistryClient) -> None:
    """GET /v1/registry is parsed into RegistryInfo."""
    mock.get(f"{REGISTRY}/v1/registry").respond(200, json=registry_info())
    info = registry.info()
    assert (info.name, info.public_key, info.version) == (
        "Example Registry",
        REGISTRY_SIGNER.public_key,
        "1.0",
    )


def test_info_malformed(mock: respx.MockRouter, registry: RegistryClient) -> None:
    """A registry info without a valid key is a protocol error."""
    mock.get(f"{REGISTRY}/v1/registry").respond(
        200, json={"name": "x", "public_key": "zz", "version": "1.0"}
    )
    with pytest.raises(ProtocolError, match=r"registry\.public_key"):
        registry.info()


# --------------------------------------------------------------------------- pinning


def test_first_contact_pins(
    mock: respx.MockRouter, registry: RegistryClient, pins: PinStore
) -> None:
    """The first contact pins the presented key (trust on first use)."""
    mock.get(f"{REGISTRY}/v1/registry").respond(200, json=registry_info())
    assert registry.registry_key() == REGISTRY_SIGNER.public_key
    assert pins.get(REGISTRY) == REGISTRY_SIGNER.public_key
    assert pins.all()[REGISTRY]["name"] == "Example Registry"


def test_same_key_accepted(
    mock: respx.MockRouter, registry: RegistryClient, pins: PinStore
) -> None:
    """A pinned registry presenting the pinned key is accepted."""
    pins.pin(REGISTRY, REGISTRY_SIGNER.public_key)
    mock.get(f"{REGISTRY}/v1/registry").respond(200, json=registry_info())
    assert registry.registry_key() == REGISTRY_SIGNER.public_key


def test_changed_key_is_verification_error(
    mock: respx.MockRouter, registry: RegistryClient, pins: PinStore
) -> None:
    """A pinned registry presenting another key fails with exit 5 and a re-pin hint."""
    pins.pin(REGISTRY, REGISTRY_SIGNER.public_key)
    mock.get(f"{REGISTRY}/v1/registry").respond(200, json=registry_info(OTHER_SIGNER))
    with pytest.raises(VerificationError) as info:
        registry.registry_key()
    exc = info.value
    assert exc.exit_code == ExitCode.VERIFICATION
    assert exc.code == "registry_key_mismatch"
    assert exc.message == (
        f"registry {REGISTRY} now presents key {OTHER_SIGNER.key_id}, but key "
        f"{REGISTRY_SIGNER.key_id} is pinned; it may be impersonated"
    )
    assert exc.hint is not None
    assert exc.hint.endswith(f"omictl registry pin {REGISTRY} --public-key HEX")
    assert pins.get(REGISTRY) == REGISTRY_SIGNER.public_key


def test_explicit_repin_accepts_new_key(
    mock: respx.MockRouter, registry: RegistryClient, pins: PinStore
) -> None:
    """After an explicit re-pin, the new key is accepted."""
    pins.pin(REGISTRY, REGISTRY_SIGNER.public_key)
    pins.pin(REGISTRY, OTHER_SIGNER.public_key, replace=True)
    mock.get(f"{REGISTRY}/v1/registry").respond(200, json=registry_info(OTHER_SIGNER))
    assert registry.registry_key() == OTHER_SIGNER.public_key


def test_no_pins_fetches_without_pinning(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy, tmp_path: Path
) -> None:
    """pins=None uses the presented key and writes nothing."""
    mock.get(f"{REGISTRY}/v1/registry").respond(200, json=registry_info())
    reg = RegistryClient(REGISTRY, client=client, policy=policy, pins=None)
    assert reg.registry_key() == REGISTRY_SIGNER.public_key
    assert list(tmp_path.iterdir()) == []


def test_registry_key_fetched_once(mock: respx.MockRouter, registry: RegistryClient) -> None:
    """The key is fetched once per client."""
    route = mock.get(f"{REGISTRY}/v1/registry").respond(200, json=registry_info())
    registry.registry_key()
    registry.registry_key()
    assert route.call_count == 1


def test_registry_status_mismatch(
    mock: respx.MockRouter, registry: RegistryClient, pins: PinStore
) -> None:
    """registry_status reports a mismatch without pinning anything."""
    pins.pin(REGISTRY, REGISTRY_SIGNER.public_key)
    mock.get(f"{REGISTRY}/v1/registry").respond(200, json=registry_info(OTHER_SIGNER))
    status = registry_status(registry, pins)
    assert status.pin_state == "mismatch"
    assert status.to_json()["pin"]["key_id"] == REGISTRY_SIGNER.key_id
    assert status.to_json()["key_id"] == OTHER_SIGNER.key_id


# --------------------------------------------------------------------------- lookups


def test_get_app(mock: respx.MockRouter, registry: RegistryClient) -> None:
    """GET /v1/apps/{app_id} is parsed into App."""
    mock.get(f"{REGISTRY}/v1/apps/{APP_ID}").respond(
        200,
        json={"app_id": APP_ID, "master_public_key": "ab" * 32, "status": "ACTIVE"},
    )
    app = registry.get_app(APP_ID)
    assert (app.app_id, app.master_public_key, app.status) == (APP_ID, b"\xab" * 32, "ACTIVE")


def test_get_app_for_other_app(mock: respx.MockRouter, registry: RegistryClient) -> None:
    """An answer about another app is a verification failure."""
    mock.get(f"{REGISTRY}/v1/apps/{APP_ID}").respond(
        200, json={"app_id": "org.x.y.z.abcdef", "master_public_key": "ab" * 32, "status": "A"}
    )
    with pytest.raises(VerificationError, match="answered for app"):
        registry.get_app(APP_ID)


def test_unknown_app_rejected(mock: respx.MockRouter, registry: RegistryClient) -> None:
    """unknown_app 404 is RemoteRejected with that code."""
    mock.get(f"{REGISTRY}/v1/apps/{APP_ID}").mock(return_value=problem("unknown_app", 404))
    with pytest.raises(RemoteRejected) as info:
        registry.get_app(APP_ID)
    assert (info.value.code, info.value.status) == ("unknown_app", 404)


def test_get_binding(mock: respx.MockRouter, registry: RegistryClient) -> None:
    """GET .../services/{service_id} is parsed into Binding."""
    mock.get(f"{REGISTRY}/v1/apps/{APP_ID}/services/{SERVICE_ID}").respond(200, json=BINDING)
    binding = registry.get_binding(APP_ID, SERVICE_ID)
    assert binding.to_json() == BINDING


def test_list_services_active_only(mock: respx.MockRouter, registry: RegistryClient) -> None:
    """active_only asks ?status=ACTIVE and drops anything else the server sent."""
    revoked = {**BINDING, "service_id": "old-1", "status": "REVOKED", "revoked_at": 5}
    route = mock.get(f"{REGISTRY}/v1/apps/{APP_ID}/services", params={"status": "ACTIVE"}).respond(
        200, json={"app_id": APP_ID, "services": [BINDING, revoked]}
    )
    bindings = registry.list_services(APP_ID, active_only=True)
    assert [b.service_id for b in bindings] == [SERVICE_ID]
    assert route.calls.last.request.url.query == b"status=ACTIVE"


def test_list_services_all(mock: respx.MockRouter, registry: RegistryClient) -> None:
    """Without active_only every binding is returned."""
    revoked = {**BINDING, "service_id": "old-1", "status": "REVOKED", "revoked_at": 5}
    mock.get(f"{REGISTRY}/v1/apps/{APP_ID}/services").respond(
        200, json={"app_id": APP_ID, "services": [BINDING, revoked]}
    )
    assert [b.status for b in registry.list_services(APP_ID)] == ["ACTIVE", "REVOKED"]


def test_path_segments_quoted(mock: respx.MockRouter, registry: RegistryClient) -> None:
    """Ids are percent-encoded as single path segments."""
    route = mock.get(url__regex=r".*").respond(404)
    with pytest.raises(ProtocolError):
        registry.get_binding(APP_ID, "a/b?c")
    assert route.calls.last.request.url.raw_path == (
        f"/v1/apps/{APP_ID}/services/a%2Fb%3Fc".encode()
    )


@pytest.mark.parametrize("bad", ["", ".", ".."])
def test_dot_segments_refused(registry: RegistryClient, bad: str) -> None:
    """Empty, '.' and '..' ids are refused before any request."""
    with pytest.raises(UsageError, match="cannot be used in a registry URL"):
        registry.get_binding(APP_ID, bad)


# --------------------------------------------------------------------------- unbind


def test_unbind_returns_verified_record(mock: respx.MockRouter, registry: RegistryClient) -> None:
    """A 200 record signed by the pinned key is returned verified."""
    mock.get(f"{REGISTRY}/v1/registry").respond(200, json=registry_info())
    route = mock.post(UNBIND).respond(200, json=record())
    rec = registry.unbind(APP_ID, SERVICE_ID, sign=sign_unbind)
    assert (rec.app_id, rec.service_id, rec.receipt_id, rec.revoked_at) == (
        APP_ID,
        SERVICE_ID,
        "RCPT-1",
        1705412601,
    )
    sent = json.loads(route.calls.last.request.content)
    assert sent["data"]["context"] == "decommission"
    assert route.calls.last.request.headers["content-type"] == "application/json"


def test_unbind_retry_resigns(mock: respx.MockRouter, registry: RegistryClient) -> None:
    """A retried unbind carries a new signature and a different nonce."""
    mock.get(f"{REGISTRY}/v1/registry").respond(200, json=registry_info())
    route = mock.post(UNBIND).mock(
        side_effect=[httpx.Response(503), httpx.Response(200, json=record())]
    )
    registry.unbind(APP_ID, SERVICE_ID, sign=sign_unbind)
    first, second = (json.loads(c.request.content) for c in route.calls)
    assert first["data"]["nonce"] != second["data"]["nonce"]
    assert first["signature"] != second["signature"]


def test_record_signed_by_other_key_refused(
    mock: respx.MockRouter, registry: RegistryClient
) -> None:
    """A record signed by a key other than the pinned one is a verification failure."""
    mock.get(f"{REGISTRY}/v1/registry").respond(200, json=registry_info())
    mock.post(UNBIND).respond(200, json=record(OTHER_SIGNER))
    with pytest.raises(VerificationError) as info:
        registry.unbind(APP_ID, SERVICE_ID, sign=sign_unbind)
    assert info.value.code == "invalid_signature"
    assert info.value.message == (
        f"revocation record signature does not verify under key {REGISTRY_SIGNER.key_id}"
    )


def test_record_for_other_service_refused(mock: respx.MockRouter, registry: RegistryClient) -> None:
    """A validly signed record for another service is a verification failure."""
    mock.get(f"{REGISTRY}/v1/registry").respond(200, json=registry_info())
    mock.post(UNBIND).respond(200, json=record(service_id="cms-other-1"))
    with pytest.raises(VerificationError) as info:
        registry.unbind(APP_ID, SERVICE_ID, sign=sign_unbind)
    assert info.value.code == "invalid_record"
    assert "cms-other-1" in info.value.message


@pytest.mark.parametrize("member", ["receipt_id", "propagation"])
def test_record_without_a_member_of_its_shape_refused(
    mock: respx.MockRouter, registry: RegistryClient, member: str
) -> None:
    """PROTOCOL.md section 3's record always has receipt_id (null without a receipt) and
    propagation: a signed record without one is refused, not filled in with a default."""
    from omictl.core.envelope import sign_envelope
    from tests.transport.helpers import REGISTRY_SIGNER

    data = dict(record()["data"])
    del data[member]
    mock.get(f"{REGISTRY}/v1/registry").respond(200, json=registry_info())
    mock.post(UNBIND).respond(200, json=sign_envelope(data, REGISTRY_SIGNER).to_json())
    with pytest.raises(VerificationError) as info:
        registry.unbind(APP_ID, SERVICE_ID, sign=sign_unbind)
    assert info.value.code == "invalid_record"
    assert f"has no {member} member" in info.value.message


def test_unbind_key_mismatch_sends_nothing(
    mock: respx.MockRouter, registry: RegistryClient, pins: PinStore
) -> None:
    """With a changed registry key the unbind is never sent."""
    pins.pin(REGISTRY, OTHER_SIGNER.public_key)
    mock.get(f"{REGISTRY}/v1/registry").respond(200, json=registry_info())
    route = mock.post(UNBIND).respond(200, json=record())
    with pytest.raises(VerificationError, match="now presents key"):
        registry.unbind(APP_ID, SERVICE_ID, sign=sign_unbind)
    assert route.call_count == 0


def test_already_revoked_carries_verified_record(
    mock: respx.MockRouter, registry: RegistryClient
) -> None:
    """409 already_revoked becomes AlreadyRevoked with the verified existing record."""
    mock.get(f"{REGISTRY}/v1/registry").respond(200, json=registry_info())
    mock.post(UNBIND).mock(return_value=problem("already_revoked", 409, record=record()))
    with pytest.raises(AlreadyRevoked) as info:
        registry.unbind(APP_ID, SERVICE_ID, sign=sign_unbind)
    exc = info.value
    assert exc.record is not None
    assert (exc.record.service_id, exc.record.receipt_id) == (SERVICE_ID, "RCPT-1")
    assert (exc.status, exc.code) == (409, "already_revoked")
    assert isinstance(exc, RemoteRejected)


def test_already_revoked_without_record(mock: respx.MockRouter, registry: RegistryClient) -> None:
    """409 already_revoked without a record gives AlreadyRevoked with record None."""
    mock.get(f"{REGISTRY}/v1/registry").respond(200, json=registry_info())
    mock.post(UNBIND).mock(return_value=problem("already_revoked", 409))
    with pytest.raises(AlreadyRevoked) as info:
        registry.unbind(APP_ID, SERVICE_ID, sign=sign_unbind)
    assert info.value.record is None


def test_a_bare_already_revoked_type_is_only_a_rejection(
    mock: respx.MockRouter, registry: RegistryClient
) -> None:
    """A 409 whose type is "already_revoked" without this protocol's ``urn:omi:error:``
    is not the section 3 conflict: a plain rejection (exit 4), never "already revoked"."""
    mock.get(f"{REGISTRY}/v1/registry").respond(200, json=registry_info())
    body = {"type": "already_revoked", "title": "t", "status": 409, "record": record()}
    mock.post(UNBIND).respond(409, json=body, headers={"Content-Type": "application/problem+json"})
    with pytest.raises(RemoteRejected) as info:
        registry.unbind(APP_ID, SERVICE_ID, sign=sign_unbind)
    assert not isinstance(info.value, AlreadyRevoked)
    assert info.value.exit_code == 4


def test_already_revoked_with_forged_record(
    mock: respx.MockRouter, registry: RegistryClient
) -> None:
    """409 already_revoked with a record not signed by the pinned key is a verification error."""
    mock.get(f"{REGISTRY}/v1/registry").respond(200, json=registry_info())
    mock.post(UNBIND).mock(
        return_value=problem("already_revoked", 409, record=record(OTHER_SIGNER))
    )
    with pytest.raises(VerificationError) as info:
        registry.unbind(APP_ID, SERVICE_ID, sign=sign_unbind)
    assert not isinstance(info.value, AlreadyRevoked)
    assert info.value.exit_code == ExitCode.VERIFICATION


def test_other_409_is_plain_rejection(mock: respx.MockRouter, registry: RegistryClient) -> None:
    """A 409 with another code stays a RemoteRejected."""
    mock.get(f"{REGISTRY}/v1/registry").respond(200, json=registry_info())
    mock.post(UNBIND).mock(return_value=problem("conflict", 409))
    with pytest.raises(RemoteRejected) as info:
        registry.unbind(APP_ID, SERVICE_ID, sign=sign_unbind)
    assert not isinstance(info.value, AlreadyRevoked)
    assert info.value.code == "conflict"


def test_invalid_signature_rejection(mock: respx.MockRouter, registry: RegistryClient) -> None:
    """401 invalid_signature on unbind is RemoteRejected, exit 4, not retried."""
    mock.get(f"{REGISTRY}/v1/registry").respond(200, json=registry_info())
    route = mock.post(UNBIND).mock(return_value=problem("invalid_signature", 401))
    with pytest.raises(RemoteRejected) as info:
        registry.unbind(APP_ID, SERVICE_ID, sign=sign_unbind)
    assert (info.value.code, info.value.exit_code, route.call_count) == (
        "invalid_signature",
        ExitCode.REJECTED,
        1,
    )


def test_unreachable_registry_gets_the_sessions_hint(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy
) -> None:
    """A registry URL derived from the AppID that does not answer: the hint says so."""
    hint = "https://registry.example was derived from the AppID because no registry is set"
    reg = RegistryClient(REGISTRY, client=client, policy=policy, pins=None, unreachable_hint=hint)
    mock.get(f"{REGISTRY}/v1/apps/{APP_ID}").mock(
        side_effect=httpx.ConnectError("Name or service not known")
    )
    with pytest.raises(RemoteUnavailable) as info:
        reg.get_app(APP_ID)
    assert info.value.hint is not None
    assert info.value.hint.endswith(hint)  # after the transport's own hint, not instead
    assert "check the URL and your network" in info.value.hint
    assert "cannot get an answer" in info.value.message
    assert info.value.exit_code == ExitCode.UNAVAILABLE


def test_registry_without_session_hint_keeps_the_transport_hint(
    mock: respx.MockRouter, registry: RegistryClient
) -> None:
    mock.get(f"{REGISTRY}/v1/apps/{APP_ID}").mock(
        side_effect=httpx.ConnectError("Name or service not known")
    )
    with pytest.raises(RemoteUnavailable) as info:
        registry.get_app(APP_ID)
    assert info.value.hint is not None and "derived" not in info.value.hint
