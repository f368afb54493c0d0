"""Hostile-peer fixtures: the real CLI (in process) against a hand-built lying peer, or
against the sandbox with a fault armed. Everything listens on 127.0.0.1, ephemeral ports."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from omictl.cli.app import run
from omictl.core.envelope import Signer
from tests.e2e.conftest import CliResult, e2e, fast_retries  # noqa: F401  (fixtures)
from tests.hostile.peer import FakeOmi

SEED_VAR = "OMICTL_HOSTILE_SEED"


@dataclass
class TimedResult(CliResult):
    """A CLI result and how long the run took (wall clock, seconds)."""

    seconds: float = 0.0


@dataclass
class Hostile:
    """A fake OMI world on a hostile peer, and a CLI runner wired to it."""

    fake: FakeOmi
    master: Signer
    home: Path
    capsys: pytest.CaptureFixture[str]

    @property
    def app_id(self) -> str:
        return self.fake.app_id

    @property
    def service_id(self) -> str:
        return self.fake.service_id

    def cli(self, *args: str) -> TimedResult:
        self.capsys.readouterr()
        start = time.monotonic()
        code = run(list(args))
        seconds = time.monotonic() - start
        captured = self.capsys.readouterr()
        assert "Traceback" not in captured.err, captured.err
        return TimedResult(code, captured.out, captured.err, seconds)

    def decommission(self, *extra: str) -> TimedResult:
        """``omictl -o json decommission APP SERVICE --yes [extra...]``."""
        return self.cli("-o", "json", "decommission", self.app_id, self.service_id, "--yes", *extra)


@pytest.fixture
def hostile(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fast_retries: None,  # noqa: F811
) -> Iterator[Hostile]:
    """A fresh honest fake registry + provider, and an omictl home holding its master key."""
    for name in list(os.environ):
        if name.startswith("OMICTL_"):
            monkeypatch.delenv(name)
    seed = secrets.token_bytes(32)
    master = Signer(seed)
    home = tmp_path / "home"
    fake = FakeOmi(master)
    try:
        monkeypatch.setenv("OMICTL_HOME", str(home))
        monkeypatch.setenv("OMICTL_REGISTRY", fake.url)
        monkeypatch.setenv(SEED_VAR, seed.hex())
        monkeypatch.setenv("OMICTL_KEY", f"env:{SEED_VAR}")
        yield Hostile(fake=fake, master=master, home=home, capsys=capsys)
    finally:
        fake.stop()
