"""SIGKILL at every step boundary of a real `omictl decommission` process, then re-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import E2E

pytestmark = pytest.mark.e2e

# Runs the real CLI in a child process that SIGKILLs itself at one chosen point.
KILLER = r"""
import os, signal, sys
point, n = os.environ["KILL_POINT"], int(os.environ.get("KILL_N", "0"))

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if point == "save":
    import omictl.workflow.journal as j
    real_save, count = j.JournalStore.save, [0]
    def save(self, *a, **k):
        real_save(self, *a, **k)
        count[0] += 1
        if count[0] == n:
            die()
    j.JournalStore.save = save
elif point == "after_delete":
    import omictl.transport.provider as p
    real_terminate = p.ProviderClient.terminate
    def terminate(self, *a, **k):
        real_terminate(self, *a, **k)
        die()
    p.ProviderClient.terminate = terminate
elif point == "after_unbind":
    import omictl.transport.registry as r
    real_unbind = r.RegistryClient.unbind
    def unbind(self, *a, **k):
        real_unbind(self, *a, **k)
        die()
    r.RegistryClient.unbind = unbind
from omictl.cli.app import run
sys.exit(run(sys.argv[1:]))
"""

POINTS = [
    ("save", 1),
    ("after_delete", 0),
    ("save", 2),
    ("save", 3),
    ("after_unbind", 0),
    ("save", 4),
    ("save", 5),
]


def run_child(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", KILLER, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.mark.parametrize(("point", "n"), POINTS, ids=[f"{p}-{n}" for p, n in POINTS])
def test_sigkill_then_rerun_completes(e2e: E2E, point: str, n: int) -> None:
    """Killed at a step boundary, the re-run completes: REVOKED, one receipt, bundle verifies."""
    sid = e2e.sandbox.service_ids[0]
    env = dict(
        os.environ,
        KILL_POINT=point,
        KILL_N=str(n),
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
    )
    killed = run_child(["decommission", e2e.app_id, sid, "--yes"], env)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    deletes_before = e2e.sandbox.delete_count(sid)
    res = e2e.cli("-o", "json", "decommission", e2e.app_id, sid, "--yes")
    assert res.code == 0, res.err
    doc = res.json()
    assert doc["status"] == "REVOKED"
    assert e2e.sandbox.binding_status(sid) == "REVOKED"
    original = e2e.sandbox.stored_receipt(sid)
    assert original is not None
    assert doc["receipt_id"] == original["data"]["receipt_id"]
    if point == "save" and n >= 2:  # a verified receipt was held: no second DELETE
        assert e2e.sandbox.delete_count(sid) == deletes_before
    journals = list((e2e.home / "state").rglob("*.journal"))
    assert len(journals) == 1
    verify = e2e.cli("receipts", "verify", doc["bundle"])
    assert verify.code == 0, verify.err
