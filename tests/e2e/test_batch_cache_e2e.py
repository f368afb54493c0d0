"""Batch runs share one registry client, which reads the registry key and the app record once:
the master-key check and the registry pin check must still stop every service."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from typing import Any

import pytest

from omictl.core.envelope import Signer
from tests.e2e.conftest import E2E

pytestmark = pytest.mark.e2e


def test_batch_wrong_master_key_stops_every_service(
    e2e: E2E, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--all with a key that is not the app's master key: exit 5, no DELETE anywhere."""
    monkeypatch.setenv("OMICTL_E2E_SEED", secrets.token_hex(32))
    res = e2e.cli("-o", "json", "decommission", e2e.app_id, "--all", "--yes", "--concurrency", "3")
    assert res.code == 5, res.err
    results = res.json()["results"]
    assert len(results) == 3
    assert {(r["status"], r["error"]["code"]) for r in results} == {("FAILED", "wrong_master_key")}
    for sid in e2e.sandbox.service_ids:
        assert e2e.sandbox.delete_count(sid) == 0
        assert e2e.sandbox.binding_status(sid) == "ACTIVE"


def test_a_failed_service_in_a_text_batch_carries_its_hint(
    e2e: E2E, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Text output of a batch: each failed service's line (progress on stderr, report on
    stdout) carries its error's hint, as a one-service run prints it."""
    monkeypatch.setenv("OMICTL_E2E_SEED", secrets.token_hex(32))
    res = e2e.cli("decommission", e2e.app_id, "--all", "--yes")
    assert res.code == 5
    failed = [line for line in res.out.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 3 and all("  hint: " in line for line in failed)
    assert res.err.count("  hint: ") >= 3


def test_batch_changed_registry_key_stops_every_service(e2e: E2E) -> None:
    """--all against a registry whose key differs from the pinned one: exit 5, nothing sent."""
    impostor = Signer(secrets.token_bytes(32)).public_key.hex()
    pin = e2e.cli("registry", "pin", e2e.sandbox.registry_url, "--public-key", impostor)
    assert pin.code == 0, pin.err
    res = e2e.cli("-o", "json", "decommission", e2e.app_id, "--all", "--yes", "--concurrency", "3")
    assert res.code == 5, res.err
    results = res.json()["results"]
    assert {(r["status"], r["error"]["code"]) for r in results} == {
        ("FAILED", "registry_key_mismatch")
    }
    for sid in e2e.sandbox.service_ids:
        assert e2e.sandbox.delete_count(sid) == 0
        assert e2e.sandbox.binding_status(sid) == "ACTIVE"


def test_batch_revokes_all_with_shared_lookups(e2e: E2E) -> None:
    """--all at concurrency 3: every binding REVOKED, each DELETE and unbind sent once."""
    res = e2e.cli("-o", "json", "decommission", e2e.app_id, "--all", "--yes", "--concurrency", "3")
    assert res.code == 0, res.err
    assert {r["status"] for r in res.json()["results"]} == {"REVOKED"}
    # the final re-read: one listing for the whole batch, each result says so
    assert {r["steps"][-1]["message"] for r in res.json()["results"]} == {
        "binding is REVOKED (no longer discoverable, re-read in the app's listing)"
    }
    for sid in e2e.sandbox.service_ids:
        assert e2e.sandbox.binding_status(sid) == "REVOKED"
        assert (e2e.sandbox.delete_count(sid), e2e.sandbox.unbind_count(sid)) == (1, 1)


def test_first_contact_pin_is_reported_once_per_batch(e2e: E2E) -> None:
    """A batch's first contact with a registry warns about the new pin exactly once."""
    res = e2e.cli("decommission", e2e.app_id, "--all", "--yes", "--concurrency", "8")
    assert res.code == 0, res.err
    assert res.err.count("first contact with") == 1


def test_ctrl_c_in_a_batch_still_prints_the_results_document(
    e2e: E2E, monkeypatch: pytest.MonkeyPatch
) -> None:
    """-o json --all interrupted: one JSON document with every service (ABORTED for the
    ones never started), exit 130, and a line on stderr saying what happened."""
    from omictl.workflow import batch

    real = batch.run_batch

    def interrupted(targets: Any, deps_for: Any, **kw: Any) -> Any:
        done = real(targets[:1], deps_for, **kw)
        raise batch.BatchInterrupted(done + [batch._not_started(t) for t in targets[1:]])

    monkeypatch.setattr(batch, "run_batch", interrupted)
    res = e2e.cli("-o", "json", "decommission", e2e.app_id, "--all", "--yes")
    assert res.code == 130, res.err
    doc = res.json()
    assert [r["status"] for r in doc["results"]] == ["REVOKED", "ABORTED", "ABORTED"]
    assert doc["exit_code"] == 130 and doc["summary"]["ABORTED"] == 2
    assert "interrupted" in res.err and "2 of 3 not started" in res.err


def test_sigterm_in_a_batch_stops_it_like_ctrl_c(e2e: E2E, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cancelled CI job sends SIGTERM: the batch stops starting services, finishes the
    one in flight and still prints every result (exit 130); the handler is restored."""
    import os
    import signal

    from omictl.workflow import batch

    real = batch.run_batch
    before = signal.getsignal(signal.SIGTERM)

    def terminated(targets: Any, deps_for: Any, **kw: Any) -> Any:
        sent = []

        def deps_then_term(target: Any) -> Any:
            if not sent:
                sent.append(target)
                os.kill(os.getpid(), signal.SIGTERM)  # the job is cancelled now
            return deps_for(target)

        return real(targets, deps_then_term, **{**kw, "concurrency": 1})

    monkeypatch.setattr(batch, "run_batch", terminated)
    res = e2e.cli("-o", "json", "decommission", e2e.app_id, "--all", "--yes")
    assert res.code == 130, res.err
    statuses = [r["status"] for r in res.json()["results"]]
    assert statuses[0] == "REVOKED" and "ABORTED" in statuses, statuses
    assert signal.getsignal(signal.SIGTERM) is before


def _decommission_child(*args: str) -> subprocess.Popen[str]:
    """``omictl -o json decommission ARGS`` as a real process. A child of a non-interactive
    shell may inherit SIGINT ignored; it gets the default back, as under a terminal."""
    import os
    import signal
    import sys

    return subprocess.Popen(
        [sys.executable, "-m", "omictl", "-o", "json", "decommission", *args],
        env=dict(os.environ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _batch_child(e2e: E2E) -> subprocess.Popen[str]:
    """``decommission APP --all --yes --concurrency 1``, its providers slowed to 3 s a
    request so that a service is in flight for a while."""
    e2e.sandbox.faults.provider("slow", seconds=3.0)
    return _decommission_child(e2e.app_id, "--all", "--yes", "--concurrency", "1")


def _wait_for_first_delete(e2e: E2E, child: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while not any(e2e.sandbox.delete_count(s) for s in e2e.sandbox.service_ids):
        assert child.poll() is None and time.monotonic() < deadline, "no DELETE arrived"
        time.sleep(0.05)


def test_a_second_ctrl_c_stops_at_once(e2e: E2E) -> None:
    """Ctrl-C, then Ctrl-C again while a service is in flight: the process ends at once
    (exit 130, no results document), not after the in-flight request."""
    import signal

    child = _batch_child(e2e)
    _wait_for_first_delete(e2e, child)
    child.send_signal(signal.SIGINT)
    time.sleep(0.3)
    started = time.monotonic()
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=20)
    assert child.returncode == 130, err
    assert time.monotonic() - started < 2.0  # the 3 s provider was not waited for
    assert "stopped at once" in err and out == ""


def test_sigterm_after_ctrl_c_lets_the_run_finish_and_report(e2e: E2E) -> None:
    """GitHub Actions cancels with SIGINT, then SIGTERM 7.5 s later: the SIGTERM does not cut
    the report short; the in-flight service finishes and every result is printed."""
    import signal

    child = _batch_child(e2e)
    _wait_for_first_delete(e2e, child)
    child.send_signal(signal.SIGINT)
    time.sleep(0.3)
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 130, err
    statuses = [r["status"] for r in json.loads(out)["results"]]
    assert statuses == ["REVOKED", "ABORTED", "ABORTED"], statuses


def test_an_interrupt_after_every_service_finished_still_exits_130(
    e2e: E2E, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every service done, but the signal came before the re-read: exit 130 (the re-reads
    were skipped), not 0."""
    from omictl.workflow import batch

    real = batch.run_batch

    def interrupted_late(targets: Any, deps_for: Any, **kw: Any) -> Any:
        done = real(targets, deps_for, **kw)
        raise batch.BatchInterrupted(done)

    monkeypatch.setattr(batch, "run_batch", interrupted_late)
    res = e2e.cli("-o", "json", "decommission", e2e.app_id, "--all", "--yes")
    assert res.code == 130, res.err
    doc = res.json()
    assert doc["exit_code"] == 130 and {r["status"] for r in doc["results"]} == {"REVOKED"}


def _single_child(e2e: E2E, service_id: str) -> subprocess.Popen[str]:
    """``decommission APP SERVICE --yes``, its provider slowed to 3 s."""
    e2e.sandbox.faults.provider("slow", seconds=3.0)
    return _decommission_child(e2e.app_id, service_id, "--yes")


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_signal_in_a_single_decommission_is_reported_and_resumable(
    e2e: E2E, signame: str
) -> None:
    """Before, SIGTERM killed a one-service run with no word (exit 143) and Typer turned
    Ctrl-C into a silent exit 130. Now: exit 130, one line on stderr, the JSON error
    document on stdout, and the re-run resumes without a second wipe elsewhere."""
    import signal

    sid = e2e.sandbox.service_ids[0]
    child = _single_child(e2e, sid)
    _wait_for_first_delete(e2e, child)
    child.send_signal(getattr(signal, signame))
    out, err = child.communicate(timeout=20)
    assert child.returncode == 130, err
    assert "Traceback" not in err
    assert f"interrupted ({signame})" in err
    doc = json.loads(out)  # as for any failed decommission: its result is the document
    assert (doc["status"], doc["exit_code"], doc["service_id"]) == ("ABORTED", 130, sid)
    assert (doc["error"]["code"], doc["error"]["exit_code"]) == ("interrupted", 130)
    assert doc["steps"][-1]["step"] == "confirm"  # the DELETE was in flight
    e2e.sandbox.faults.clear()
    res = e2e.cli("-o", "json", "decommission", e2e.app_id, sid, "--yes")
    assert res.code == 0, res.err
    assert res.json()["resumed_from"] == "termination_sent"
