"""The App Registry client (PROTOCOL.md section 3).

Answers are validated with :mod:`omictl.core.messages`; the revocation record is accepted
only under the registry key pinned for this base URL (trust on first use, then fixed).
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from omictl.core.envelope import Envelope, key_id
from omictl.core.messages import (
    App,
    Binding,
    RegistryInfo,
    RevocationRecord,
    parse_app,
    parse_binding,
    parse_binding_list,
    parse_registry_info,
    verify_revocation_record,
)
from omictl.errors import (
    ProtocolError,
    RemoteRejected,
    RemoteUnavailable,
    UsageError,
    VerificationError,
)
from omictl.transport.http import RetryPolicy, check_url, request_json
from omictl.transport.pins import PinChange, PinStore, repin_hint


class RecordRejected(VerificationError):
    """The registry answered the unbind, but its revocation record did not verify (wrong
    key, another app or service, not REVOKED). ``answer`` is what it sent, for the caller
    to keep; the binding may well be revoked."""

    code = "invalid_record"

    def __init__(self, error: VerificationError, *, answer: Any) -> None:
        super().__init__(error.message, hint=error.hint, code=error.code)
        self.answer = answer


def _record_of_unbind(
    raw: Any, *, registry_public_key: bytes, app_id: str, service_id: str
) -> RevocationRecord:
    try:
        return verify_revocation_record(
            raw, registry_public_key=registry_public_key, app_id=app_id, service_id=service_id
        )
    except ProtocolError:
        raise  # the answer's shape: as any other broken answer of the call
    except VerificationError as exc:
        raise RecordRejected(exc, answer=raw) from exc


class AlreadyRevoked(RemoteRejected):
    """The registry answered ``already_revoked`` (409): the binding was revoked before.

    ``record`` is the existing revocation record from the problem's ``record`` member,
    verified under the pinned registry key, or None when the registry sent none. (A record
    that is present but does not verify is a :class:`VerificationError`, never this.)
    The workflow treats this as success (CLI.md: exit 0, "already revoked").
    """

    code = "already_revoked"

    def __init__(self, rejection: RemoteRejected, *, record: RevocationRecord | None) -> None:
        super().__init__(
            rejection.message,
            status=rejection.status,
            problem_type=rejection.problem_type,
            title=rejection.title,
            detail=rejection.detail,
            problem=rejection.problem,
            hint=rejection.hint,
        )
        self.record = record


def encode_body(envelope: Envelope) -> bytes:
    """The wire bytes of a signed envelope (UTF-8 JSON; the signature covers only the
    canonical ``data``, so the outer layout does not matter)."""
    return json.dumps(envelope.to_json(), ensure_ascii=False, allow_nan=False).encode("utf-8")


def _segment(value: str, *, what: str) -> str:
    """One URL path segment, percent-encoded; ``.``/``..``/empty refused (no traversal)."""
    if not isinstance(value, str) or value in ("", ".", ".."):
        raise UsageError(f"{what} {value!r} cannot be used in a registry URL")
    return urllib.parse.quote(value, safe="")


class RegistryClient:
    """Talks to one registry base URL; every call raises only :class:`OmictlError`."""

    def __init__(
        self,
        base_url: str,
        *,
        client: httpx.Client,
        policy: RetryPolicy,
        pins: PinStore | None,
        insecure: bool = False,
        unreachable_hint: str | None = None,
    ) -> None:
        """Raises :class:`UsageError` if ``base_url`` breaks PROTOCOL.md section 6.

        ``unreachable_hint`` is added to the hint of a registry that does not answer (the
        session sets it when the URL was derived from the AppID, a likely cause)."""
        self.base_url = check_url(base_url, insecure=insecure, what="registry URL")
        self._unreachable_hint = unreachable_hint
        self._client = client
        self._policy = policy
        self._pins = pins
        self._key: bytes | None = None
        # set when registry_key() pinned the key on this first contact (trust on first use)
        self._pinned_on_first_use = False
        # A batch shares one client across worker threads: the key and app records are
        # fetched once (single flight) instead of once per service, so the pin check and
        # the first pin happen exactly once per run.
        self._key_lock = threading.Lock()
        self._apps: dict[str, App] = {}
        self._app_locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def _get(self, path: str, *, what: str) -> Any:
        try:
            return request_json(
                self._client, "GET", self.base_url + path, policy=self._policy, what=what
            ).body
        except RemoteUnavailable as exc:
            if self._unreachable_hint is None or exc.code == "rate_limited":
                raise
            hint = f"{exc.hint}; {self._unreachable_hint}" if exc.hint else self._unreachable_hint
            raise RemoteUnavailable(
                exc.message, hint=hint, code=exc.code, details=exc.details
            ) from exc

    def info(self) -> RegistryInfo:
        """``GET /v1/registry``: name and signing key, *unverified* (this is how the key is
        learnt). Raises :class:`ProtocolError` for a malformed answer and the
        :func:`request_json` errors."""
        return parse_registry_info(self._get("/v1/registry", what="registry info"))

    def registry_key(self) -> bytes:
        """The registry key to verify records with (fetched once per client).

        With a pin store: the first contact pins the key the registry presents (trust on
        first use); later, the presented key must equal the pinned one, else
        :class:`VerificationError` (exit 5) with a hint to re-pin explicitly. With
        ``pins=None`` the presented key is used without pinning.

        Thread safe: concurrent first calls make one request and one pin check; the others
        wait for it. A failed fetch or check caches nothing (the next call tries again).
        """
        key = self._key
        if key is not None:
            return key
        with self._key_lock:
            if self._key is None:
                self._key = self._fetch_key()
            return self._key

    def _fetch_key(self) -> bytes:
        pinned = self._pins.get(self.base_url) if self._pins is not None else None
        info = self.info()
        if self._pins is not None:
            if pinned is None:
                self._pins.pin(self.base_url, info.public_key, name=info.name)
                self._pinned_on_first_use = True
            elif pinned != info.public_key:
                raise VerificationError(
                    f"registry {self.base_url} now presents key {key_id(info.public_key)}, "
                    f"but key {key_id(pinned)} is pinned; it may be impersonated",
                    hint=repin_hint(self.base_url),
                    code="registry_key_mismatch",
                )
        return info.public_key

    def take_first_use_pin(self) -> bool:
        """True exactly once (across threads) if :meth:`registry_key` pinned the key on
        first contact, so the caller can tell the user once."""
        with self._key_lock:
            pinned, self._pinned_on_first_use = self._pinned_on_first_use, False
            return pinned

    def get_app(self, app_id: str) -> App:
        """``GET /v1/apps/{app_id}``, checked to be that app; fetched once per client.

        A client lives for one command, so a batch of N services of one app reads the app
        record (its master key) once, not N times; a run that started with the right key
        keeps the record it checked. Thread safe: concurrent first calls make one request.
        Only a successful, validated answer is kept. Raises :class:`ProtocolError`,
        :class:`VerificationError` (another app) and the :func:`request_json` errors.
        """
        app = self._apps.get(app_id)
        if app is not None:
            return app
        with self._locks_lock:
            lock = self._app_locks.setdefault(app_id, threading.Lock())
        with lock:  # one app's first fetch never waits for another app's
            app = self._apps.get(app_id)
            if app is None:
                body = self._get(f"/v1/apps/{_segment(app_id, what='app id')}", what="app lookup")
                app = parse_app(body, app_id=app_id)
                self._apps[app_id] = app
            return app

    def list_services(self, app_id: str, *, active_only: bool = False) -> list[Binding]:
        """``GET /v1/apps/{app_id}/services`` (``?status=ACTIVE`` with ``active_only``;
        the filter is re-applied locally). Raises like :meth:`get_app`."""
        path = f"/v1/apps/{_segment(app_id, what='app id')}/services"
        if active_only:
            path += "?status=ACTIVE"
        bindings = parse_binding_list(self._get(path, what="service list"), app_id=app_id)
        return [b for b in bindings if b.status == "ACTIVE"] if active_only else bindings

    def get_binding(self, app_id: str, service_id: str) -> Binding:
        """``GET /v1/apps/{app_id}/services/{service_id}``, checked to be that binding.
        Raises like :meth:`get_app`."""
        path = (
            f"/v1/apps/{_segment(app_id, what='app id')}"
            f"/services/{_segment(service_id, what='service id')}"
        )
        return parse_binding(
            self._get(path, what="binding lookup"), app_id=app_id, service_id=service_id
        )

    def unbind(
        self, app_id: str, service_id: str, *, sign: Callable[[], Envelope]
    ) -> RevocationRecord:
        """``POST .../unbind`` with ``sign()`` called afresh for every try; returns the
        revocation record verified under :meth:`registry_key` for these ids.

        The registry key is settled *before* anything is sent, so a key mismatch stops the
        run with nothing changed. Raises :class:`AlreadyRevoked` (409 ``already_revoked``,
        its record verified), :class:`VerificationError` for a record that does not verify
        or names another service, and the :func:`request_json` errors.
        """
        registry_key = self.registry_key()
        path = (
            f"/v1/apps/{_segment(app_id, what='app id')}"
            f"/services/{_segment(service_id, what='service id')}/unbind"
        )
        try:
            answer = request_json(
                self._client,
                "POST",
                self.base_url + path,
                body=lambda: encode_body(sign()),
                policy=self._policy,
                what="registry unbind",
            )
        except RemoteRejected as exc:
            # the full URN: a bare "already_revoked" or another URN scheme's type is not
            # this protocol's conflict (PROTOCOL.md section 5), only a rejection
            if exc.status != 409 or exc.problem_type != "urn:omi:error:already_revoked":
                raise
            raw_record = exc.problem.get("record")
            record = None
            if raw_record is not None:
                record = _record_of_unbind(
                    raw_record,
                    registry_public_key=registry_key,
                    app_id=app_id,
                    service_id=service_id,
                )
            raise AlreadyRevoked(exc, record=record) from exc
        return _record_of_unbind(
            answer.body, registry_public_key=registry_key, app_id=app_id, service_id=service_id
        )


PinState = Literal["pinned", "not_pinned", "mismatch"]


@dataclass(frozen=True)
class RegistryStatus:
    """What ``omictl registry show`` reports: the presented key and the local pin."""

    url: str
    info: RegistryInfo
    pin_state: PinState
    pinned: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        """The ``-o json`` document."""
        return {
            "url": self.url,
            "name": self.info.name,
            "public_key": self.info.public_key.hex(),
            "key_id": key_id(self.info.public_key),
            "pin": {"status": self.pin_state, **(self.pinned or {})},
        }


def registry_status(registry: RegistryClient, pins: PinStore) -> RegistryStatus:
    """Fetch what the registry presents and compare it with the pin; pins nothing.

    Raises the :meth:`RegistryClient.info` errors and :class:`UsageError` for a corrupt
    pin file.
    """
    info = registry.info()
    pinned = pins.entry(registry.base_url)
    state: PinState
    if pinned is None:
        state = "not_pinned"
    elif pinned["public_key"] == info.public_key.hex():
        state = "pinned"
    else:
        state = "mismatch"
    return RegistryStatus(url=registry.base_url, info=info, pin_state=state, pinned=pinned)


def pin_presented(registry: RegistryClient, pins: PinStore) -> PinChange:
    """Pin the key the registry presents now (trust on first use), when none is pinned.

    The same key already pinned changes nothing. Raises :class:`VerificationError` when
    another key is pinned: re-pinning to whatever the server presents would defeat the
    pin, so a change needs ``--public-key`` with a key checked out of band. Also raises
    the :meth:`RegistryClient.info` errors.
    """
    pins.get(registry.base_url)  # a corrupt pin file or a conflict: said before any request
    info = registry.info()
    # what was pinned before, read under the pin file's lock with the write
    before, name = pins.pin(registry.base_url, info.public_key, name=info.name)
    return PinChange(
        url=registry.base_url,
        old_key=before[0] if before else None,
        new_key=info.public_key,
        name=name,  # the name the pin holds (kept when the key was pinned already)
        source="tofu",
    )
