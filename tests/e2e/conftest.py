"""End-to-end fixtures: the real CLI against a real sandbox on 127.0.0.1 (ephemeral port)."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from omictl.cli.app import run
from omictl.core.envelope import Signer
from omictl.sandbox import Sandbox, start_sandbox

SEED_VAR = "OMICTL_E2E_SEED"


@dataclass
class CliResult:
    """What one CLI invocation did."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class E2E:
    """A sandbox, the master key it trusts, and a CLI runner wired to both."""

    sandbox: Sandbox
    master: Signer
    home: Path
    capsys: pytest.CaptureFixture[str]

    @property
    def app_id(self) -> str:
        return self.sandbox.app_id

    def cli(self, *args: str) -> CliResult:
        self.capsys.readouterr()
        code = run(list(args))
        captured = self.capsys.readouterr()
        assert "Traceback" not in captured.err, captured.err
        return CliResult(code, captured.out, captured.err)


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retry back-off of milliseconds, so retry paths do not slow the suite."""
    from omictl.transport import http

    class Quick(http.RetryPolicy):
        def __init__(self, **kw: Any) -> None:
            kw.setdefault("base_delay", 0.01)
            kw.setdefault("max_delay", 0.02)
            super().__init__(**kw)

    monkeypatch.setattr(http, "RetryPolicy", Quick)


@pytest.fixture
def e2e(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fast_retries: None,
) -> Iterator[E2E]:
    """A fresh sandbox (3 services) and an omictl home whose key is the app's master key."""
    for name in list(os.environ):
        if name.startswith("OMICTL_"):
            monkeypatch.delenv(name)
    monkeypatch.delenv("NO_COLOR", raising=False)
    seed = secrets.token_bytes(32)
    master = Signer(seed)
    home = tmp_path / "home"
    with start_sandbox(master_public_key=master.public_key, services=3) as sandbox:
        monkeypatch.setenv("OMICTL_HOME", str(home))
        monkeypatch.setenv("OMICTL_REGISTRY", sandbox.registry_url)
        monkeypatch.setenv(SEED_VAR, seed.hex())
        monkeypatch.setenv("OMICTL_KEY", f"env:{SEED_VAR}")
        yield E2E(sandbox=sandbox, master=master, home=home, capsys=capsys)
