"""The reference sandbox: a strict App Registry, Domain Services, Auth and Billing on loopback.

No public OMI registry exists, so omictl ships this peer for ``omictl sandbox``,
``omictl demo`` and the e2e tests. It implements the server side of PROTOCOL.md and rejects
whatever the protocol forbids; see ``docs/sandbox.md``.
"""

from omictl.sandbox.api import Sandbox, ServiceInfo, default_app_id, start_sandbox
from omictl.sandbox.faults import PROVIDER_MODES, REGISTRY_MODES, Faults, Rule

__all__ = [
    "PROVIDER_MODES",
    "REGISTRY_MODES",
    "Faults",
    "Rule",
    "Sandbox",
    "ServiceInfo",
    "default_app_id",
    "start_sandbox",
]
