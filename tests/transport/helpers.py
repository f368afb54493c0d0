"""Builders shared by the transport tests: keys, registry answers, records, problems."""

from __future__ import annotations

import secrets
from typing import Any

import httpx

from omictl.core.envelope import Envelope, Signer, sign_envelope
from omictl.core.messages import problem_json, unbind_request_data

REGISTRY = "https://registry.example"
APP_ID = "org.omiappreg.alice.business_app.7f8a9d"
SERVICE_ID = "cms-article-77"
ENDPOINT = "https://article.cms.example/api/v1"

REGISTRY_SIGNER = Signer(bytes([1]) * 32, name="registry")
OTHER_SIGNER = Signer(bytes([2]) * 32, name="impostor")
MASTER_SIGNER = Signer(bytes([3]) * 32, name="master")
SERVICE_SIGNER = Signer(bytes([4]) * 32, name="service")

#: Every PROTOCOL.md section 5 code with its status.
PROBLEM_CODES = [
    ("malformed_request", 400),
    ("unsupported_version", 400),
    ("invalid_signature", 401),
    ("stale_request", 401),
    ("replayed_nonce", 401),
    ("unknown_app", 404),
    ("unknown_service", 404),
    ("already_revoked", 409),
    ("invalid_receipt", 422),
]


def registry_info(
    signer: Signer = REGISTRY_SIGNER, name: str = "Example Registry"
) -> dict[str, Any]:
    """A ``GET /v1/registry`` body presenting ``signer``'s key."""
    return {"name": name, "public_key": signer.public_key.hex(), "version": "1.0"}


def record(
    signer: Signer = REGISTRY_SIGNER,
    *,
    app_id: str = APP_ID,
    service_id: str = SERVICE_ID,
    receipt_id: str | None = "RCPT-1",
) -> dict[str, Any]:
    """A revocation record envelope signed by ``signer``."""
    data = {
        "app_id": app_id,
        "service_id": service_id,
        "status": "REVOKED",
        "revoked_at": 1705412601,
        "receipt_id": receipt_id,
        "context": "revocation_record",
        "propagation": [{"target": "auth", "status": "delivered"}],
    }
    return sign_envelope(data, signer).to_json()


def problem(code: str, status: int, **extra: Any) -> httpx.Response:
    """A problem+json answer for ``code``."""
    body = problem_json(code, f"Title of {code}", status, f"detail of {code}", **extra)
    return httpx.Response(status, json=body, headers={"Content-Type": "application/problem+json"})


def sign_unbind() -> Envelope:
    """A freshly signed unbind request: a new nonce every call."""
    return sign_envelope(
        unbind_request_data(
            app_id=APP_ID,
            service_id=SERVICE_ID,
            timestamp=1705412600,
            nonce=secrets.token_urlsafe(16),
            receipt=None,
        ),
        MASTER_SIGNER,
    )


class FakeClock:
    """A monotonic clock that only moves when told to (or when slept on)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
