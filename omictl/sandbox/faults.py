"""Fault injection for the sandbox: make a peer misbehave on purpose, N times or until cleared.

Tests flip these at runtime (``sandbox.faults.provider("status_503", times=2)``); the
server consults them on every request. Every fault is a :class:`Rule` naming a side
(``provider`` or ``registry``), a mode, an optional service id (``None``: every service)
and an optional count (``None``: until cleared). A rule for one service id wins over a
global rule of the same mode. All access goes through one lock, so a count of N fires
exactly N times however many threads ask.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Literal

from omictl.errors import UsageError

Side = Literal["provider", "registry"]

#: Provider (Domain Service) faults, checked in this order on each DELETE.
PROVIDER_MODES = (
    "unavailable",  # close the connection without answering (nothing done)
    "status_503",  # answer 503 problem+json (nothing done)
    "redirect",  # answer 302 to another loopback URL (nothing done)
    "slow",  # sleep ``seconds`` first, then behave normally
    "non_json",  # answer 200 text/html (nothing done)
    "oversize",  # answer 200 with a JSON body larger than 1 MiB (nothing done)
    "forged_receipt",  # wipe, then answer a receipt signed by a random key
    "wrong_service_receipt",  # wipe, then answer a valid receipt naming another service
    "failed_status_receipt",  # wipe, then answer a valid receipt with status "failure"
    "lost_receipt",  # wipe, then close the connection without answering
)
#: Registry faults.
REGISTRY_MODES = (
    "status_503",  # every /v1 endpoint answers 503 (nothing done)
    "unbind_503",  # unbind answers 503 (nothing done)
    "down",  # unbind answers 503 until cleared (same as unbind_503 without a count)
    "revoked_before_unbind",  # binding GETs say REVOKED while the binding is ACTIVE
    "record_for_other_service",  # revoke, but sign a record naming another service id
    "unknown_purge_targets",  # revoke, and list an extra unknown target in propagation
    "purge_target_down",  # the billing purge receiver answers 503: delivery "failed"
)


@dataclass
class Rule:
    """One armed fault."""

    side: Side
    mode: str
    service_id: str | None = None
    remaining: int | None = None
    seconds: float = 0.0


@dataclass
class Faults:
    """The armed faults of one sandbox; safe to change from any thread at any time."""

    rules: list[Rule] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def provider(
        self,
        mode: str,
        *,
        service_id: str | None = None,
        times: int | None = None,
        seconds: float = 0.0,
    ) -> Faults:
        """Arm a provider fault (``PROVIDER_MODES``) for one service or all; returns self.

        ``times`` is how often it fires (``None``: until cleared); ``seconds`` is the delay
        of ``slow``. Raises :class:`UsageError` for an unknown mode or a bad count.
        """
        return self._arm("provider", mode, service_id, times, seconds)

    def registry(
        self, mode: str, *, service_id: str | None = None, times: int | None = None
    ) -> Faults:
        """Arm a registry fault (``REGISTRY_MODES``) for one service or all; returns self.

        Raises :class:`UsageError` for an unknown mode or a bad count.
        """
        return self._arm("registry", mode, service_id, times, 0.0)

    def clear(self, side: Side | None = None, mode: str | None = None) -> None:
        """Disarm every fault matching ``side`` and ``mode`` (``None`` matches all)."""
        with self._lock:
            self.rules = [
                r
                for r in self.rules
                if not ((side is None or r.side == side) and (mode is None or r.mode == mode))
            ]

    def take(self, side: Side, mode: str, service_id: str | None) -> Rule | None:
        """The rule that fires now for ``mode`` and ``service_id``, its count consumed.

        A rule naming the service wins over a global one; a spent rule is removed.
        Returns ``None`` when nothing is armed.
        """
        with self._lock:
            candidates = [r for r in self.rules if r.side == side and r.mode == mode]
            chosen = next((r for r in candidates if r.service_id == service_id), None)
            if chosen is None:
                chosen = next((r for r in candidates if r.service_id is None), None)
            if chosen is None:
                return None
            if chosen.remaining is not None:
                chosen.remaining -= 1
                if chosen.remaining <= 0:
                    self.rules.remove(chosen)
            return Rule(
                chosen.side, chosen.mode, chosen.service_id, chosen.remaining, chosen.seconds
            )

    def _arm(
        self, side: Side, mode: str, service_id: str | None, times: int | None, seconds: float
    ) -> Faults:
        modes = PROVIDER_MODES if side == "provider" else REGISTRY_MODES
        if mode not in modes:
            raise UsageError(f"unknown {side} fault {mode!r}", hint=f"known: {', '.join(modes)}")
        if times is not None and times < 1:
            raise UsageError("a fault count must be 1 or more (None: until cleared)")
        if seconds < 0:
            raise UsageError("a delay cannot be negative")
        with self._lock:
            self.rules.append(Rule(side, mode, service_id, times, seconds))
        return self
