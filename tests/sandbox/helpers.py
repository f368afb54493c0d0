"""Hand-built protocol requests for the sandbox tests (no omictl client class involved)."""

from __future__ import annotations

import secrets
import time
from typing import Any

import httpx

from omictl.core.envelope import Signer, sign_envelope
from omictl.sandbox import Sandbox

PROBLEM = "application/problem+json"


def now() -> int:
    """The wall clock in integer Unix seconds (the sandbox's default clock)."""
    return int(time.time())


def fresh_nonce() -> str:
    """A protocol nonce: 128 random bits, URL-safe."""
    return secrets.token_urlsafe(16)


def termination(sb: Sandbox, service_id: str, signer: Signer, **data: Any) -> dict[str, Any]:
    """A signed DELETE body for ``service_id``; ``data`` overrides members (None drops)."""
    body: dict[str, Any] = {
        "app_id": sb.app_id,
        "service_id": service_id,
        "timestamp": now(),
        "nonce": fresh_nonce(),
        "context": "permanent_termination",
        "data_handling": "wipe",
    }
    return _sign(body, data, signer)


def unbind_request(
    sb: Sandbox,
    service_id: str,
    signer: Signer,
    receipt: dict[str, Any] | None = None,
    **data: Any,
) -> dict[str, Any]:
    """A signed unbind body for ``service_id`` with an optional receipt envelope."""
    body: dict[str, Any] = {
        "app_id": sb.app_id,
        "service_id": service_id,
        "timestamp": now(),
        "nonce": fresh_nonce(),
        "context": "decommission",
    }
    if receipt is not None:
        body["provider_receipt"] = receipt
    return _sign(body, data, signer)


def _sign(body: dict[str, Any], overrides: dict[str, Any], signer: Signer) -> dict[str, Any]:
    for key, value in overrides.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return sign_envelope(body, signer).to_json()


def send_delete(http: httpx.Client, sb: Sandbox, service_id: str, envelope: Any) -> httpx.Response:
    """DELETE the envelope (as JSON) to the service's endpoint."""
    return http.request("DELETE", sb.service(service_id).endpoint_url, json=envelope)


def send_unbind(
    http: httpx.Client,
    sb: Sandbox,
    service_id: str,
    envelope: Any,
    *,
    app_id: str | None = None,
) -> httpx.Response:
    """POST the envelope to the unbind URL of ``app_id``/``service_id``."""
    app = app_id or sb.app_id
    return http.post(f"{sb.registry_url}/v1/apps/{app}/services/{service_id}/unbind", json=envelope)


def receipt_for(http: httpx.Client, sb: Sandbox, service_id: str, signer: Signer) -> dict[str, Any]:
    """Terminate the tenant and return its receipt envelope (asserting a 200)."""
    response = send_delete(http, sb, service_id, termination(sb, service_id, signer))
    assert response.status_code == 200, response.text
    receipt: dict[str, Any] = response.json()
    return receipt


def problem_code(response: httpx.Response) -> str:
    """The short code of a problem+json answer, after checking its media type and status."""
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == response.status_code
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    code: str = body["type"].removeprefix("urn:omi:error:")
    return code


def assert_rejected(
    response: httpx.Response,
    *,
    status: int,
    code: str,
    sb: Sandbox,
    before: dict[str, list[dict[str, Any]]],
) -> dict[str, Any]:
    """The answer is the problem ``code`` with ``status``, and the state did not move."""
    assert response.status_code == status, response.text
    assert problem_code(response) == code
    assert sb.snapshot() == before
    body: dict[str, Any] = response.json()
    return body
