"""Shared pytest fixtures. Keep this file small and generic: one fixture per need."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

#: Variables that change omictl's behaviour; tests start without any of them.
OMICTL_ENV_VARS = (
    "OMICTL_HOME",
    "OMICTL_PROFILE",
    "OMICTL_REGISTRY",
    "OMICTL_KEY",
    "OMICTL_OUTPUT",
    "OMICTL_PASSPHRASE",
    "OMICTL_NEW_PASSPHRASE",
)


@pytest.fixture
def fast_kdf(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """New key files use libsodium's MIN Argon2id cost instead of MODERATE (~1 s each).

    Only the cost of *creating* files in this process changes; files are still read and
    checked exactly as in production.
    """
    from omictl import keystore

    monkeypatch.setattr(keystore, "KDF_LIMITS", keystore.MIN_LIMITS)
    yield


@pytest.fixture
def clean_omictl_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset every OMICTL_* variable, so the developer's own settings never leak in."""
    for name in OMICTL_ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def fresh_output_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts as a new process would: no JSON document written yet (``run()``
    resets it too; tests that call ``write_json`` or ``render_error`` directly need this)."""
    from omictl.cli import output

    monkeypatch.setattr(output, "document_written", False)
