"""Fixtures for the sandbox tests: a master key, a running sandbox, a plain HTTP client."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from omictl.core.envelope import Signer
from omictl.sandbox import Sandbox, start_sandbox


@pytest.fixture
def master() -> Signer:
    """A throwaway master key."""
    return Signer(os.urandom(32), name="test-master")


@pytest.fixture
def sb(master: Signer) -> Iterator[Sandbox]:
    """A sandbox with in-memory state and three services, on an ephemeral loopback port."""
    with start_sandbox(master_public_key=master.public_key) as sandbox:
        yield sandbox


@pytest.fixture(scope="session")
def http() -> Iterator[httpx.Client]:
    """A plain httpx client: no proxies from the environment, no redirects followed.

    Session-wide because building one costs ~0.1 s (its TLS context); it holds no state
    between tests beyond pooled loopback connections.
    """
    with httpx.Client(trust_env=False, timeout=10.0, follow_redirects=False) as client:
        yield client
