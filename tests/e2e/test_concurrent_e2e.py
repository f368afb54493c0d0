"""Two real `omictl decommission` processes at once against the sandbox.

The journal's flock makes the second run wait for the first, then resume from what the
first recorded: the provider sees exactly one DELETE and the registry one unbind, whatever
the interleaving. A slow provider (1 s) holds the first run inside the lock, so the second
really does contend for it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import E2E

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 5


def _spawn(args: list[str]) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1")
    return subprocess.Popen(
        [sys.executable, "-m", "omictl", "-o", "json", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> tuple[int, dict[str, Any], str]:
    out, err = proc.communicate(timeout=90)
    assert "Traceback" not in err, err
    return proc.returncode, json.loads(out), err  # stdout: exactly one JSON document


def _journal(home: Path, app_id: str, sid: str) -> dict[str, Any]:
    from omictl.workflow.journal import JournalStore

    doc: dict[str, Any] = JournalStore(home / "state").load(app_id, sid).to_json()
    return doc


@pytest.mark.parametrize("round_no", range(ROUNDS))
def test_two_runs_one_service_one_delete(e2e: E2E, round_no: int) -> None:
    """Two processes on one service: one DELETE, one unbind, both exit 0, journal done."""
    sid = e2e.sandbox.service_ids[round_no % len(e2e.sandbox.service_ids)]
    e2e.sandbox.faults.provider("slow", service_id=sid, seconds=1.0)
    procs = [_spawn(["decommission", e2e.app_id, sid, "--yes"]) for _ in range(2)]
    results = [_finish(p) for p in procs]

    for code, doc, err in results:
        if code == 6:  # allowed by the contract, though the 120 s lock wait should win
            assert doc["error"]["code"] == "in_progress", err
        else:
            assert code == 0, err
            assert doc["status"] == "REVOKED"
    assert [code for code, _, _ in results].count(0) >= 1
    assert e2e.sandbox.delete_count(sid) == 1
    assert e2e.sandbox.unbind_count(sid) == 1
    assert e2e.sandbox.binding_status(sid) == "REVOKED"

    done = [doc for code, doc, _ in results if code == 0]
    genuine = e2e.sandbox.stored_receipt(sid)
    assert genuine is not None
    assert {doc["receipt_id"] for doc in done} == {genuine["data"]["receipt_id"]}
    assert sorted(doc["already_revoked"] for doc in done) == [False, True][: len(done)]

    journal = _journal(e2e.home, e2e.app_id, sid)
    assert journal["phase"] == "done"
    assert journal["receipt"] == genuine
    assert list((e2e.home / "state").rglob("*.tmp")) == []
    assert e2e.cli("receipts", "verify", journal["bundle_path"]).code == 0


def test_two_runs_two_services_share_home(e2e: E2E) -> None:
    """Two processes on two services, one home, first contact for both: both exit 0."""
    sids = e2e.sandbox.service_ids[:2]
    e2e.sandbox.faults.provider("slow", seconds=0.5)
    procs = [_spawn(["decommission", e2e.app_id, sid, "--yes"]) for sid in sids]
    results = [_finish(p) for p in procs]
    assert [code for code, _, _ in results] == [0, 0], [err for _, _, err in results]
    for sid in sids:
        assert e2e.sandbox.delete_count(sid) == 1
        assert e2e.sandbox.binding_status(sid) == "REVOKED"
        assert _journal(e2e.home, e2e.app_id, sid)["phase"] == "done"
    pins = json.loads((e2e.home / "known_registries.json").read_text())
    assert list(pins["registries"]) == [e2e.sandbox.registry_url]
    assert pins["registries"][e2e.sandbox.registry_url]["public_key"] == (
        e2e.sandbox.registry_public_key.hex()
    )


def test_lock_held_past_wait_is_in_progress(e2e: E2E, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another holder keeps the service's lock past the wait: exit 6 in_progress, nothing sent."""
    import fcntl

    from omictl.workflow.journal import JournalStore

    real_locked = JournalStore.locked

    def short_wait(self: JournalStore, app_id: str, service_id: str, **_kw: Any) -> Any:
        return real_locked(self, app_id, service_id, wait=0.3)

    monkeypatch.setattr(JournalStore, "locked", short_wait)
    sid = e2e.sandbox.service_ids[0]
    lock_path = e2e.home / "state" / e2e.app_id / f"{sid}.journal"
    lock_path.parent.mkdir(parents=True)
    with lock_path.open("w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        res = e2e.cli("-o", "json", "decommission", e2e.app_id, sid, "--yes")
    assert res.code == 6, res.err
    assert res.json()["error"]["code"] == "in_progress"
    assert "another omictl run is decommissioning" in res.err
    assert e2e.sandbox.delete_count(sid) == 0
    assert e2e.sandbox.binding_status(sid) == "ACTIVE"
