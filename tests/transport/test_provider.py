"""ProviderClient.terminate: signed DELETE, unverified JSON answer, endpoint rules."""

from __future__ import annotations

import json
import secrets

import httpx
import pytest
import respx

from omictl.core.envelope import Envelope, sign_envelope
from omictl.core.messages import termination_request_data
from omictl.errors import ExitCode, ProtocolError, RemoteRejected, UsageError
from omictl.transport.http import RetryPolicy
from omictl.transport.provider import ProviderClient
from tests.transport.helpers import APP_ID, ENDPOINT, MASTER_SIGNER, SERVICE_ID, problem


def sign_termination() -> Envelope:
    """A freshly signed DELETE envelope."""
    return sign_envelope(
        termination_request_data(
            app_id=APP_ID,
            service_id=SERVICE_ID,
            timestamp=1705412950,
            nonce=secrets.token_urlsafe(16),
        ),
        MASTER_SIGNER,
    )


@pytest.fixture
def provider(client: httpx.Client, policy: RetryPolicy) -> ProviderClient:
    """A provider client with the fast policy."""
    return ProviderClient(client=client, policy=policy)


def test_terminate_sends_signed_delete(mock: respx.MockRouter, provider: ProviderClient) -> None:
    """DELETE carries the envelope as JSON and the answer comes back unverified."""
    route = mock.delete(ENDPOINT).respond(200, json={"anything": "goes"})
    assert provider.terminate(ENDPOINT, sign=sign_termination) == {"anything": "goes"}
    request = route.calls.last.request
    assert request.headers["content-type"] == "application/json"
    sent = json.loads(request.content)
    assert sent["data"]["context"] == "permanent_termination"
    assert sent["public_key_hint"] == MASTER_SIGNER.key_id


def test_terminate_sends_to_the_endpoint_exactly_as_bound(
    mock: respx.MockRouter, provider: ProviderClient
) -> None:
    """PROTOCOL.md section 4: DELETE {endpoint_url}. A trailing slash is kept (a provider
    may route /tenants/42/ and /tenants/42 differently); it was once cut off."""
    endpoint = ENDPOINT + "/tenants/42/"
    route = mock.delete(endpoint).respond(200, json={})
    provider.terminate(endpoint, sign=sign_termination)
    assert str(route.calls.last.request.url) == endpoint


def test_terminate_retry_has_new_nonce(mock: respx.MockRouter, provider: ProviderClient) -> None:
    """503 then 200: two DELETEs with different nonces."""
    route = mock.delete(ENDPOINT).mock(
        side_effect=[httpx.Response(503), httpx.Response(200, json={"r": 1})]
    )
    provider.terminate(ENDPOINT, sign=sign_termination)
    nonces = [json.loads(c.request.content)["data"]["nonce"] for c in route.calls]
    assert len(nonces) == 2
    assert nonces[0] != nonces[1]


def test_terminate_unknown_service(mock: respx.MockRouter, provider: ProviderClient) -> None:
    """unknown_service 404 is RemoteRejected (exit 4)."""
    mock.delete(ENDPOINT).mock(return_value=problem("unknown_service", 404))
    with pytest.raises(RemoteRejected) as info:
        provider.terminate(ENDPOINT, sign=sign_termination)
    assert (info.value.code, info.value.exit_code) == ("unknown_service", ExitCode.REJECTED)


def test_plain_http_endpoint_refused(mock: respx.MockRouter, provider: ProviderClient) -> None:
    """A plain-http non-loopback endpoint is refused (exit 2) and nothing is sent."""
    route = mock.route().respond(200, json={})
    with pytest.raises(UsageError) as info:
        provider.terminate("http://article.cms.example/api", sign=sign_termination)
    assert info.value.exit_code == ExitCode.USAGE
    assert route.call_count == 0


def test_plain_http_endpoint_with_insecure(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy
) -> None:
    """With insecure=True a plain-http endpoint is used."""
    mock.delete("http://article.cms.example/api").respond(200, json={"ok": True})
    provider = ProviderClient(client=client, policy=policy, insecure=True)
    assert provider.terminate("http://article.cms.example/api", sign=sign_termination) == {
        "ok": True
    }


def test_insecure_warns_once_per_plain_http_host(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy
) -> None:
    """--insecure says so loudly (PROTOCOL.md section 6): one warning per plain-http
    non-loopback host, none for https or loopback endpoints."""
    mock.route().respond(200, json={"ok": True})
    told: list[str] = []
    provider = ProviderClient(client=client, policy=policy, insecure=True, warn=told.append)
    for url in (
        "http://article.cms.example/api/a",
        "http://article.cms.example/api/b",
        "https://blob.storage.example/api",
        "http://127.0.0.1:9/api",
        "http://mail.relay.example:8080/api",
    ):
        provider.terminate(url, sign=sign_termination)
    assert len(told) == 2
    assert "service endpoint article.cms.example is plain HTTP" in told[0]
    assert "mail.relay.example:8080" in told[1]


def test_malformed_endpoint_is_protocol_error(provider: ProviderClient) -> None:
    """An endpoint_url the registry got wrong (ftp:) is a protocol error (exit 5)."""
    with pytest.raises(ProtocolError) as info:
        provider.terminate("ftp://article.cms.example/api", sign=sign_termination)
    assert info.value.exit_code == ExitCode.VERIFICATION
