"""In-memory stand-ins for the registry and provider clients, for offline workflow tests.

They speak the same Python interface as omictl.transport's clients and sign with real
keys, so the workflow's verification is exercised for real.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from omictl.core.envelope import Envelope, Signer, sign_envelope
from omictl.core.messages import (
    App,
    Binding,
    RevocationRecord,
    verify_revocation_record,
)
from omictl.errors import RemoteUnavailable

APP_ID = "org.omiappreg.alice.business_app.7f8a9d"


@dataclass
class FakeWorld:
    """A registry and its providers, in memory."""

    master: Signer = field(default_factory=lambda: Signer(secrets.token_bytes(32)))
    registry_signer: Signer = field(default_factory=lambda: Signer(secrets.token_bytes(32)))
    services: dict[str, Signer] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    receipts: dict[str, dict[str, Any]] = field(default_factory=dict)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    deletes: list[dict[str, Any]] = field(default_factory=list)
    unbinds: list[dict[str, Any]] = field(default_factory=list)
    #: provider behaviour: "ok", "forged", "other_service", "failed_status", "down"
    provider_mode: str = "ok"
    #: registry unbind behaviour: "ok", "down"
    registry_mode: str = "ok"
    #: what the provider's receipt says about data handling (None: the field is left out)
    receipt_handling: str | None = None
    now: int = 1_800_000_000

    def add_service(self, service_id: str) -> None:
        self.services[service_id] = Signer(secrets.token_bytes(32))
        self.status[service_id] = "ACTIVE"

    def binding(self, service_id: str) -> Binding:
        return Binding(
            app_id=APP_ID,
            service_id=service_id,
            service_type="CMS",
            endpoint_url=f"https://provider.example/{service_id}",
            public_key=self.services[service_id].public_key,
            status=self.status[service_id],
            revoked_at=None,
        )


class FakeRegistry:
    """RegistryClient's interface over a FakeWorld."""

    def __init__(self, world: FakeWorld) -> None:
        self.w = world

    def registry_key(self) -> bytes:
        return self.w.registry_signer.public_key

    def take_first_use_pin(self) -> bool:
        return False

    def get_app(self, app_id: str) -> App:
        return App(app_id=app_id, master_public_key=self.w.master.public_key, status="ACTIVE")

    def get_binding(self, app_id: str, service_id: str) -> Binding:
        return self.w.binding(service_id)

    def list_services(self, app_id: str, *, active_only: bool = False) -> list[Binding]:
        return [
            self.w.binding(s)
            for s in self.w.services
            if not active_only or self.w.status[s] == "ACTIVE"
        ]

    def unbind(
        self, app_id: str, service_id: str, *, sign: Callable[[], Envelope]
    ) -> RevocationRecord:
        env = sign()
        self.w.unbinds.append(env.to_json())
        if self.w.registry_mode == "down":
            raise RemoteUnavailable("registry unavailable (fake)")
        receipt = env.data.get("provider_receipt")
        return self.revoke(service_id, receipt["data"]["receipt_id"] if receipt else None)

    def revoke(
        self,
        service_id: str,
        receipt_id: str | None,
        propagation: list[dict[str, str]] | None = None,
    ) -> RevocationRecord:
        """Mark the binding REVOKED and sign its record (naming ``receipt_id``)."""
        self.w.status[service_id] = "REVOKED"
        record = sign_envelope(
            {
                "app_id": APP_ID,
                "service_id": service_id,
                "status": "REVOKED",
                "revoked_at": self.w.now,
                "context": "revocation_record",
                "receipt_id": receipt_id,
                "propagation": [
                    {"target": "auth", "status": "delivered"},
                    {"target": "billing", "status": "delivered"},
                ]
                if propagation is None
                else propagation,
            },
            self.w.registry_signer,
        ).to_json()
        self.w.records[service_id] = record
        return verify_revocation_record(
            record, registry_public_key=self.registry_key(), app_id=APP_ID, service_id=service_id
        )


class FakeProvider:
    """ProviderClient's interface over a FakeWorld."""

    def __init__(self, world: FakeWorld) -> None:
        self.w = world

    def announce(self, endpoint_url: str) -> None:
        """The fake world is never plain HTTP to another host."""

    def terminate(self, endpoint_url: str, *, sign: Callable[[], Envelope]) -> Any:
        env = sign()
        self.w.deletes.append(env.to_json())
        if self.w.provider_mode == "down":
            raise RemoteUnavailable("provider unavailable (fake)")
        service_id = endpoint_url.rsplit("/", 1)[-1]
        if service_id in self.w.receipts:
            return self.w.receipts[service_id]
        signer = self.w.services[service_id]
        data = {
            "app_id": APP_ID,
            "service_id": service_id,
            "status": "success",
            "message": "Instance purged",
            "receipt_id": f"RCPT-{secrets.token_hex(4)}",
        }
        if self.w.receipt_handling is not None:
            data["data_handling"] = self.w.receipt_handling
        mode = self.w.provider_mode
        if mode == "forged":
            signer = Signer(secrets.token_bytes(32))
        elif mode == "other_service":
            data["service_id"] = "someone-else"
        elif mode == "failed_status":
            data["status"] = "failure"
        receipt = sign_envelope(data, signer).to_json()
        if mode == "ok":
            self.w.receipts[service_id] = receipt
        return receipt
