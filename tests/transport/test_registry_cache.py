"""RegistryClient caching for batches: the registry key and app records are fetched once per
client (single flight across threads), the pin check still runs on first use, and failures
are never cached."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from omictl.core.messages import App
from omictl.errors import RemoteRejected, VerificationError
from omictl.transport.http import RetryPolicy
from omictl.transport.pins import PinStore
from omictl.transport.registry import RegistryClient
from tests.transport.helpers import (
    APP_ID,
    MASTER_SIGNER,
    OTHER_SIGNER,
    REGISTRY,
    REGISTRY_SIGNER,
    problem,
    registry_info,
)

OTHER_APP = "org.omiappreg.alice.other_app.abcdef"
APP_BODY = {
    "app_id": APP_ID,
    "master_public_key": MASTER_SIGNER.public_key.hex(),
    "status": "ACTIVE",
}
THREADS = 8


@pytest.fixture
def pins(tmp_path: Path) -> PinStore:
    """An empty pin store."""
    return PinStore(tmp_path / "known_registries.json")


@pytest.fixture
def registry(client: httpx.Client, policy: RetryPolicy, pins: PinStore) -> RegistryClient:
    """A client for REGISTRY with pinning on."""
    return RegistryClient(REGISTRY, client=client, policy=policy, pins=pins)


def slow(body: dict[str, Any]) -> Callable[[httpx.Request], httpx.Response]:
    """A respx side effect answering ``body`` after a pause, so concurrent callers overlap."""

    def answer(request: httpx.Request) -> httpx.Response:
        time.sleep(0.05)
        return httpx.Response(200, json=body)

    return answer


def in_threads(call: Callable[[], Any]) -> list[Any]:
    """Run ``call`` on THREADS threads started together; return results or exceptions."""
    barrier = threading.Barrier(THREADS)
    out: list[Any] = [None] * THREADS

    def work(index: int) -> None:
        barrier.wait()
        try:
            out[index] = call()
        except Exception as exc:
            out[index] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    return out


def test_app_fetched_once_per_client(mock: respx.MockRouter, registry: RegistryClient) -> None:
    """A second get_app of the same app sends nothing and returns the same record."""
    route = mock.get(f"{REGISTRY}/v1/apps/{APP_ID}").respond(200, json=APP_BODY)
    first = registry.get_app(APP_ID)
    assert registry.get_app(APP_ID) is first
    assert route.call_count == 1
    assert first == App(APP_ID, MASTER_SIGNER.public_key, "ACTIVE")


def test_app_cache_is_per_app(mock: respx.MockRouter, registry: RegistryClient) -> None:
    """Each app id is fetched (and checked) on its own."""
    mine = mock.get(f"{REGISTRY}/v1/apps/{APP_ID}").respond(200, json=APP_BODY)
    other = mock.get(f"{REGISTRY}/v1/apps/{OTHER_APP}").respond(
        200, json={**APP_BODY, "app_id": OTHER_APP}
    )
    assert registry.get_app(APP_ID).app_id == APP_ID
    assert registry.get_app(OTHER_APP).app_id == OTHER_APP
    assert (mine.call_count, other.call_count) == (1, 1)


def test_app_cache_is_per_client(
    mock: respx.MockRouter, client: httpx.Client, policy: RetryPolicy
) -> None:
    """A new client (a new command) reads the app afresh."""
    route = mock.get(f"{REGISTRY}/v1/apps/{APP_ID}").respond(200, json=APP_BODY)
    for _ in range(2):
        RegistryClient(REGISTRY, client=client, policy=policy, pins=None).get_app(APP_ID)
    assert route.call_count == 2


def test_app_rejection_not_cached(mock: respx.MockRouter, registry: RegistryClient) -> None:
    """A rejected lookup is not remembered: the next call asks again."""
    route = mock.get(f"{REGISTRY}/v1/apps/{APP_ID}")
    route.side_effect = [problem("unknown_app", 404), httpx.Response(200, json=APP_BODY)]
    with pytest.raises(RemoteRejected):
        registry.get_app(APP_ID)
    assert registry.get_app(APP_ID).master_public_key == MASTER_SIGNER.public_key
    assert route.call_count == 2


def test_app_for_other_app_not_cached(mock: respx.MockRouter, registry: RegistryClient) -> None:
    """An answer about another app fails every time and is never kept."""
    route = mock.get(f"{REGISTRY}/v1/apps/{APP_ID}").respond(
        200, json={**APP_BODY, "app_id": OTHER_APP}
    )
    for _ in range(2):
        with pytest.raises(VerificationError, match="answered for app"):
            registry.get_app(APP_ID)
    assert route.call_count == 2


def test_concurrent_app_lookups_single_flight(
    mock: respx.MockRouter, registry: RegistryClient
) -> None:
    """Threads asking for the same app at once share one request."""
    route = mock.get(f"{REGISTRY}/v1/apps/{APP_ID}").mock(side_effect=slow(APP_BODY))
    results = in_threads(lambda: registry.get_app(APP_ID))
    assert route.call_count == 1
    assert all(isinstance(r, App) and r is results[0] for r in results)


def test_concurrent_first_contact_pins_once(
    mock: respx.MockRouter, registry: RegistryClient, pins: PinStore
) -> None:
    """Threads meeting the registry for the first time make one request and one pin."""
    route = mock.get(f"{REGISTRY}/v1/registry").mock(side_effect=slow(registry_info()))
    results = in_threads(registry.registry_key)
    assert results == [REGISTRY_SIGNER.public_key] * THREADS
    assert route.call_count == 1
    assert pins.get(REGISTRY) == REGISTRY_SIGNER.public_key
    assert in_threads(registry.take_first_use_pin).count(True) == 1  # told once


def test_concurrent_changed_key_fails_everywhere(
    mock: respx.MockRouter, registry: RegistryClient, pins: PinStore
) -> None:
    """A registry presenting another key than the pinned one fails every caller (exit 5),
    caches nothing, and leaves the pin alone."""
    pins.pin(REGISTRY, REGISTRY_SIGNER.public_key)
    route = mock.get(f"{REGISTRY}/v1/registry").respond(200, json=registry_info(OTHER_SIGNER))
    results = in_threads(registry.registry_key)
    assert all(
        isinstance(r, VerificationError) and r.code == "registry_key_mismatch" for r in results
    )
    assert route.call_count == THREADS  # each caller checked the key itself
    with pytest.raises(VerificationError):
        registry.registry_key()
    assert pins.get(REGISTRY) == REGISTRY_SIGNER.public_key


def test_key_checked_against_pin_on_first_use(
    mock: respx.MockRouter, registry: RegistryClient, pins: PinStore
) -> None:
    """The cached key is the one that passed the pin check; later calls send nothing."""
    pins.pin(REGISTRY, REGISTRY_SIGNER.public_key)
    route = mock.get(f"{REGISTRY}/v1/registry").respond(200, json=registry_info())
    assert registry.registry_key() == REGISTRY_SIGNER.public_key
    route.respond(200, json=registry_info(OTHER_SIGNER))  # too late: never asked again
    assert registry.registry_key() == REGISTRY_SIGNER.public_key
    assert route.call_count == 1
    assert registry.take_first_use_pin() is False
