"""What every sandbox peer shares: state, faults, clock, the registry key, URLs, counters."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from omictl.core.envelope import Envelope, EnvelopeError, Signer, parse_envelope, parse_json
from omictl.sandbox.faults import Faults
from omictl.sandbox.problems import SandboxProblem, problem_from
from omictl.sandbox.store import Store

#: Request bodies above this are refused (413); answers above it are a protocol error for
#: clients (PROTOCOL.md section 5), which the ``oversize`` fault exercises.
MAX_BODY = 1024 * 1024
#: The core services the registry purges on every revocation (PROTOCOL.md section 3).
PURGE_TARGETS = ("auth", "billing")


@dataclass
class Counters:
    """Requests that reached a peer, per service id (any outcome)."""

    deletes: Counter[str] = field(default_factory=Counter)
    unbinds: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, which: Counter[str], service_id: str) -> None:
        """Add one to ``which[service_id]``."""
        with self._lock:
            which[service_id] += 1

    def get(self, which: Counter[str], service_id: str) -> int:
        """The current count."""
        with self._lock:
            return which[service_id]


@dataclass
class Context:
    """The shared world of one running sandbox."""

    store: Store
    faults: Faults
    clock: Callable[[], int]
    registry_signer: Signer
    base_url: str = ""  # set once the socket is bound
    purge_timeout: float = 2.0
    counters: Counters = field(default_factory=Counters)
    stopped: bool = False  # set by Sandbox.stop(); late handlers then answer 503 quietly

    def endpoint_url(self, service_id: str) -> str:
        """The Domain Service endpoint of ``service_id`` (PROTOCOL.md section 4)."""
        return f"{self.base_url}/providers/{service_id}/api/v1"

    def target_url(self, target: str) -> str:
        """The base URL of a core service (``auth``, ``billing``); purges go to ``/v1/purge``."""
        return f"{self.base_url}/{target}"


def parse_request_body(body: bytes, content_type: str | None, *, what: str) -> Envelope:
    """Parse a signed request body: JSON content type, strict JSON, envelope shape, version.

    Raises :class:`SandboxProblem` ``malformed_request`` or ``unsupported_version``.
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise SandboxProblem(
            "malformed_request", f"{what} must be sent as application/json, not {media or 'none'}"
        )
    try:
        obj = parse_json(body, what=what, error=EnvelopeError)
        return parse_envelope(obj, what=what)
    except EnvelopeError as exc:
        raise problem_from(exc) from exc
