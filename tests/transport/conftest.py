"""Fixtures of the transport tests: a mocked network, a fake clock, a fast retry policy."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import respx

from omictl.transport.http import RetryPolicy, make_client
from tests.transport.helpers import FakeClock


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    """All HTTP is mocked; an unmatched request fails the test."""
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.fixture
def clock() -> FakeClock:
    """The fake clock the policy sleeps on."""
    return FakeClock()


@pytest.fixture
def policy(clock: FakeClock) -> RetryPolicy:
    """Four tries, backoff 0.5/1/2 s (jitter pinned to 1), no real waiting."""
    return RetryPolicy(sleep=clock.sleep, jitter=lambda: 1.0, clock=clock)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    """The production client (respx intercepts its transport)."""
    with make_client(timeout=5.0) as c:
        yield c
