"""Wiring for one run: the HTTP client, registry and provider clients, pins, journals,
archive. The CLI calls :func:`open_session` and never touches httpx itself."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from omictl.config import Settings
from omictl.core.appid import registry_url_for
from omictl.workflow.archive import Archive
from omictl.workflow.journal import JournalStore

if TYPE_CHECKING:
    from omictl.transport.provider import ProviderClient
    from omictl.transport.registry import RegistryClient


@dataclass
class Session:
    """Clients and stores for one registry."""

    registry_url: str
    registry: RegistryClient
    provider: ProviderClient
    journals: JournalStore
    archive: Archive


def registry_is_derived(settings: Settings) -> bool:
    """Whether :func:`registry_url_for_app` derives the URL from the AppID."""
    return not settings.registry


def registry_url_for_app(settings: Settings, app_id: str) -> str:
    """The registry to talk to: ``--registry`` > ``OMICTL_REGISTRY`` > profile > derived
    from the AppID (PROTOCOL.md section 2)."""
    return settings.registry or registry_url_for(app_id)


@contextlib.contextmanager
def open_session(
    settings: Settings,
    *,
    registry_url: str,
    insecure: bool = False,
    timeout: float | None = None,
    pin: bool = True,
    derived: bool = False,
    warn: Callable[[str], None] | None = None,
) -> Iterator[Session]:
    """Open the HTTP client and the registry/provider clients; close them on exit.

    ``derived`` says ``registry_url`` was derived from an AppID (no registry configured):
    a registry that does not answer then gets a hint saying so. ``warn`` is told, once per
    host, when ``insecure`` lets a signed request go over plain HTTP to a non-loopback
    registry or service endpoint (PROTOCOL.md section 6: "says so loudly").

    Raises :class:`~omictl.errors.UsageError` for a registry URL the transport rules refuse
    (plain http to a non-loopback host without ``insecure``).
    """
    from omictl.transport.http import RetryPolicy, check_url, make_client
    from omictl.transport.pins import PinStore
    from omictl.transport.provider import ProviderClient
    from omictl.transport.registry import RegistryClient
    from omictl.transport.urls import plain_http_warning

    url = check_url(registry_url, insecure=insecure, what="registry URL")
    warning = plain_http_warning(url, what="registry") if insecure else None
    if warning is not None and warn is not None:
        warn(warning)
    client = make_client(timeout=timeout or settings.timeout, insecure=insecure)
    policy = RetryPolicy()
    try:
        yield Session(
            registry_url=url,
            registry=RegistryClient(
                url,
                client=client,
                policy=policy,
                pins=PinStore(settings.paths.pins_file) if pin else None,
                insecure=insecure,
                unreachable_hint=f"{url} was derived from the AppID because no registry is "
                "set; for another registry (e.g. omictl sandbox) set OMICTL_REGISTRY or pass "
                "--registry"
                if derived
                else None,
            ),
            provider=ProviderClient(client=client, policy=policy, insecure=insecure, warn=warn),
            journals=JournalStore(settings.paths.state_dir),
            archive=Archive(settings.paths.receipts_dir),
        )
    finally:
        client.close()
