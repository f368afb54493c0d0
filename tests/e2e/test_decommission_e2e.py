"""omictl decommission, end to end: the real CLI, real HTTP, the sandbox on 127.0.0.1."""

from __future__ import annotations

import json
import secrets
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest

from omictl.core.envelope import Signer
from tests.e2e.conftest import E2E

pytestmark = pytest.mark.e2e


def test_happy_path_json(e2e: E2E) -> None:
    """Exit 0, REVOKED, purge delivered to auth and billing, CLI.md's JSON fields."""
    sid = e2e.sandbox.service_ids[0]
    res = e2e.cli("-o", "json", "decommission", e2e.app_id, sid, "--yes")
    assert res.code == 0, res.err
    doc = res.json()
    assert {
        "app_id",
        "service_id",
        "status",
        "receipt_id",
        "receipt",
        "revocation_record",
        "steps",
    } <= set(doc)
    assert (doc["app_id"], doc["service_id"], doc["status"]) == (e2e.app_id, sid, "REVOKED")
    assert doc["receipt_id"] == doc["receipt"]["data"]["receipt_id"]
    assert doc["revocation_record"]["data"]["receipt_id"] == doc["receipt_id"]
    assert {p["target"]: p["status"] for p in doc["propagation"]} == {
        "auth": "delivered",
        "billing": "delivered",
    }
    assert doc["steps"][0] == {
        "step": "resolve",
        "status": "warning",
        "message": doc["steps"][0]["message"],
    }  # first contact: the registry key was pinned
    assert "pinned its key" in doc["steps"][0]["message"]
    assert list(dict.fromkeys(s["step"] for s in doc["steps"])) == [
        "resolve",
        "confirm",
        "terminate",
        "verify_receipt",
        "unbind",
        "verify_record",
        "archive",
        "check_revoked",
    ]
    assert e2e.sandbox.binding_status(sid) == "REVOKED"
    assert e2e.sandbox.delete_count(sid) == 1
    assert {p["target"] for p in e2e.sandbox.purges()} == {"auth", "billing"}


def test_revoked_binding_leaves_active_listing(e2e: E2E) -> None:
    """After decommission the service is gone from --active status but still readable."""
    sid = e2e.sandbox.service_ids[1]
    assert e2e.cli("decommission", e2e.app_id, sid, "--yes").code == 0
    active = e2e.cli("-o", "json", "status", e2e.app_id, "--active").json()
    assert sid not in [s["service_id"] for s in active["services"]]
    one = e2e.cli("-o", "json", "status", e2e.app_id, sid).json()
    assert one["services"][0]["status"] == "REVOKED"
    assert one["services"][0]["revoked_at"] is not None


def test_bundle_exports_and_verifies_offline(e2e: E2E, tmp_path: Path) -> None:
    """receipts list/show/export/verify round trip; a tampered bundle fails with exit 5."""
    sid = e2e.sandbox.service_ids[0]
    doc = e2e.cli("-o", "json", "decommission", e2e.app_id, sid, "--yes").json()
    rid = doc["receipt_id"]
    listed = e2e.cli("-o", "json", "receipts", "list").json()
    assert [r["receipt_id"] for r in listed["receipts"]] == [rid]
    revoked_at = listed["receipts"][0]["revoked_at"]
    assert isinstance(revoked_at, int)  # JSON keeps the number; text shows the UTC time
    text = e2e.cli("receipts", "list").out
    stamp = datetime.fromtimestamp(revoked_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"revoked_at={stamp}" in text
    assert e2e.cli("-o", "json", "receipts", "show", rid).json()["bundle_id"] == rid
    bundle = tmp_path / "bundle.json"
    assert e2e.cli("receipts", "export", rid, "--out", str(bundle)).code == 0
    ok = e2e.cli(
        "-o", "json", "receipts", "verify", str(bundle), "--master-key", e2e.master.public_key.hex()
    )
    assert ok.code == 0 and ok.json()["verified"] is True
    # the master key was given; the other two came from the bundle itself, and -o json says so
    assert ok.json()["keys_from_bundle"] == ["service", "registry"]
    relabelled = json.loads(bundle.read_text())
    relabelled["bundle_id"] = "RCPT-SOMEONE-ELSES"  # not signed, but must match
    bundle.write_text(json.dumps(relabelled))
    bad = e2e.cli("receipts", "verify", str(bundle))
    assert bad.code == 5 and "does not match its signed contents" in bad.err
    tampered = json.loads(bundle.read_text())
    tampered["bundle_id"] = rid
    tampered["termination_receipt"]["data"]["message"] = "nothing happened"
    bundle.write_text(json.dumps(tampered))
    bad = e2e.cli("receipts", "verify", str(bundle))
    assert bad.code == 5
    assert "omictl: error:" in bad.err
    # offline, the key is the bundle's, and the wording of a live run would mislead
    assert "(the bundle's service key)" in bad.err
    assert "the bundle's receipt was altered" in bad.err
    assert "registry" not in bad.err and "nothing was revoked" not in bad.err


def test_wrong_master_key_sends_no_delete(e2e: E2E, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key that is not the app's master key: exit 5, the provider saw no DELETE."""
    monkeypatch.setenv("OMICTL_E2E_SEED", secrets.token_hex(32))
    sid = e2e.sandbox.service_ids[0]
    res = e2e.cli("decommission", e2e.app_id, sid, "--yes")
    assert res.code == 5
    assert "not the master key" in res.err
    assert e2e.sandbox.delete_count(sid) == 0
    assert e2e.sandbox.binding_status(sid) == "ACTIVE"


@pytest.mark.parametrize(
    "mode", ["forged_receipt", "wrong_service_receipt", "failed_status_receipt"]
)
def test_bad_receipt_no_unbind(e2e: E2E, mode: str) -> None:
    """A bad receipt: exit 5, no unbind sent, binding ACTIVE, the receipt kept."""
    sid = e2e.sandbox.service_ids[0]
    e2e.sandbox.faults.provider(mode, service_id=sid)
    res = e2e.cli("decommission", e2e.app_id, sid, "--yes")
    assert res.code == 5, res.err
    assert e2e.sandbox.unbind_count(sid) == 0
    assert e2e.sandbox.binding_status(sid) == "ACTIVE"
    kept = list((e2e.home / "receipts" / "rejected").rglob("*.json"))
    assert len(kept) == 1


def test_registry_down_after_wipe_then_resume(e2e: E2E) -> None:
    """Registry down after the wipe: exit 8; back up: REVOKED, same receipt, one DELETE."""
    sid = e2e.sandbox.service_ids[0]
    e2e.sandbox.faults.registry("down")
    first = e2e.cli("-o", "json", "decommission", e2e.app_id, sid, "--yes")
    assert first.code == 8, first.err
    held = first.json()
    assert held["status"] == "PARTIAL" and held["receipt_id"]
    assert "re-run" in first.err
    e2e.sandbox.faults.clear()
    second = e2e.cli("-o", "json", "decommission", e2e.app_id, sid, "--yes")
    assert second.code == 0, second.err
    assert second.json()["receipt_id"] == held["receipt_id"]
    assert second.json()["resumed_from"] == "unbind_sent"
    assert e2e.sandbox.delete_count(sid) == 1
    assert e2e.sandbox.binding_status(sid) == "REVOKED"


def test_already_revoked_is_exit_0_nothing_sent(e2e: E2E) -> None:
    """Re-running a completed decommission: exit 0, no DELETE, no unbind."""
    sid = e2e.sandbox.service_ids[0]
    assert e2e.cli("decommission", e2e.app_id, sid, "--yes").code == 0
    again = e2e.cli("-o", "json", "decommission", e2e.app_id, sid, "--yes")
    assert again.code == 0
    assert again.json()["already_revoked"] is True
    assert e2e.sandbox.delete_count(sid) == 1 and e2e.sandbox.unbind_count(sid) == 1


@pytest.mark.parametrize(
    ("mode", "code", "fragment"),
    [
        ("non_json", 5, "application/json"),
        ("oversize", 5, "limit"),
        ("redirect", 5, "redirect"),
        ("unavailable", 6, ""),
    ],
)
def test_provider_misbehaves(e2e: E2E, mode: str, code: int, fragment: str) -> None:
    """A provider answering junk, too much, a redirect or nothing: a clear error, no unbind."""
    sid = e2e.sandbox.service_ids[0]
    e2e.sandbox.faults.provider(mode, service_id=sid)
    res = e2e.cli("decommission", e2e.app_id, sid, "--yes")
    assert res.code == code, res.err
    assert "omictl: error:" in res.err and fragment in res.err
    assert e2e.sandbox.unbind_count(sid) == 0
    assert e2e.sandbox.binding_status(sid) == "ACTIVE"


def test_provider_timeout(e2e: E2E) -> None:
    """A provider slower than --timeout: exit 6, no unbind."""
    sid = e2e.sandbox.service_ids[0]
    e2e.sandbox.faults.provider("slow", service_id=sid, seconds=3.0)
    res = e2e.cli("decommission", e2e.app_id, sid, "--yes", "--timeout", "0.5")
    assert res.code == 6, res.err
    assert e2e.sandbox.unbind_count(sid) == 0


def test_provider_503_then_200_retries(e2e: E2E) -> None:
    """503 twice then a receipt: retried with fresh envelopes, REVOKED."""
    sid = e2e.sandbox.service_ids[0]
    e2e.sandbox.faults.provider("status_503", service_id=sid, times=2)
    res = e2e.cli("decommission", e2e.app_id, sid, "--yes")
    assert res.code == 0, res.err
    assert e2e.sandbox.delete_count(sid) == 3
    assert e2e.sandbox.binding_status(sid) == "REVOKED"


def test_dry_run_sends_nothing(e2e: E2E) -> None:
    """--dry-run prints signed envelopes and sends no DELETE and no unbind."""
    sid = e2e.sandbox.service_ids[0]
    res = e2e.cli("-o", "json", "decommission", e2e.app_id, sid, "--dry-run")
    assert res.code == 0
    doc = res.json()
    assert doc["status"] == "DRY_RUN"
    sent = doc["dry_run"]["termination_request"]
    assert sent["data"]["context"] == "permanent_termination"
    from omictl.core.envelope import parse_envelope, verify_envelope

    verify_envelope(parse_envelope(sent), e2e.master.public_key)
    assert e2e.sandbox.delete_count(sid) == 0 and e2e.sandbox.unbind_count(sid) == 0


def test_batch_dry_run_prints_the_envelopes_in_text_too(e2e: E2E) -> None:
    """--all --dry-run without -o json prints each service's signed envelopes on stdout,
    as a one-service dry run does (CLI.md), and sends nothing."""
    import json as json_module

    from omictl.core.envelope import parse_envelope, verify_envelope

    res = e2e.cli("decommission", e2e.app_id, "--all", "--yes", "--dry-run")
    assert res.code == 0, res.err
    decoder = json_module.JSONDecoder()
    envelopes, text = [], res.out
    while (start := text.find("{")) != -1:  # the JSON blocks between the status lines
        doc, end = decoder.raw_decode(text, start)
        envelopes.append(doc)
        text = text[end:]
    assert len(envelopes) == len(e2e.sandbox.service_ids)
    for doc in envelopes:
        sent = doc["termination_request"]
        verify_envelope(parse_envelope(sent), e2e.master.public_key)
    assert {d["termination_request"]["data"]["service_id"] for d in envelopes} == set(
        e2e.sandbox.service_ids
    )
    assert all(e2e.sandbox.delete_count(s) == 0 for s in e2e.sandbox.service_ids)


def test_no_tty_without_yes_sends_nothing(e2e: E2E) -> None:
    """No terminal and no --yes: exit 2 before anything is sent."""
    sid = e2e.sandbox.service_ids[0]
    res = e2e.cli("decommission", e2e.app_id, sid)
    assert res.code == 2
    assert "--yes" in res.err
    assert e2e.sandbox.delete_count(sid) == 0


def test_ci_true_is_not_consent(e2e: E2E, monkeypatch: pytest.MonkeyPatch) -> None:
    """CI=true in the environment is never consent."""
    monkeypatch.setenv("CI", "true")
    sid = e2e.sandbox.service_ids[0]
    assert e2e.cli("decommission", e2e.app_id, sid).code == 2
    assert e2e.sandbox.delete_count(sid) == 0


def test_declined_prompt_sends_nothing(e2e: E2E, monkeypatch: pytest.MonkeyPatch) -> None:
    """At the prompt, typing anything but the service id aborts: exit 7, nothing sent."""
    import omictl.cli.decommission as cmd

    monkeypatch.setattr(cmd, "stdin_is_tty", lambda: True)
    monkeypatch.setattr("omictl.cli.common.ask", lambda prompt: "not-it")
    sid = e2e.sandbox.service_ids[0]
    res = e2e.cli("decommission", e2e.app_id, sid)
    assert res.code == 7
    assert e2e.sandbox.delete_count(sid) == 0


@pytest.mark.parametrize("json_out", [False, True], ids=["text", "json"])
def test_ctrl_c_at_the_prompt_is_declined_not_interrupted(
    e2e: E2E, monkeypatch: pytest.MonkeyPatch, json_out: bool
) -> None:
    """Ctrl-C at the type-the-service-id prompt: nothing was sent, so it is a decline
    (exit 7, status ABORTED), not an interruption (exit 130, whose hint speaks of resuming
    from the journal)."""
    import signal

    import omictl.cli.decommission as cmd

    def ctrl_c(prompt: str) -> str:
        signal.raise_signal(signal.SIGINT)  # through omictl's own handler, as at a terminal
        raise AssertionError("unreachable")

    monkeypatch.setattr(cmd, "stdin_is_tty", lambda: True)
    monkeypatch.setattr("omictl.cli.common.ask", ctrl_c)
    sid = e2e.sandbox.service_ids[0]
    res = e2e.cli(*(["-o", "json"] if json_out else []), "decommission", e2e.app_id, sid)
    assert res.code == 7, res.err
    assert "declined at the confirmation prompt; nothing was sent" in res.err + res.out
    assert "resume" not in res.err
    if json_out:
        assert (res.json()["status"], res.json()["exit_code"]) == ("ABORTED", 7)
    assert e2e.sandbox.delete_count(sid) == 0


def test_typed_service_id_confirms(e2e: E2E, monkeypatch: pytest.MonkeyPatch) -> None:
    """Typing the service id at the prompt proceeds."""
    import omictl.cli.decommission as cmd

    sid = e2e.sandbox.service_ids[0]
    monkeypatch.setattr(cmd, "stdin_is_tty", lambda: True)
    monkeypatch.setattr("omictl.cli.common.ask", lambda prompt: sid)
    res = e2e.cli("decommission", e2e.app_id, sid)
    assert res.code == 0, res.err
    assert "About to decommission" in res.err


def test_changed_registry_key_after_pinning(e2e: E2E) -> None:
    """A pinned registry key that no longer matches: exit 5, nothing sent."""
    other = Signer(secrets.token_bytes(32)).public_key.hex()
    pinned = e2e.cli("registry", "pin", e2e.sandbox.registry_url, "--public-key", other)
    assert pinned.code == 0, pinned.err
    sid = e2e.sandbox.service_ids[0]
    res = e2e.cli("decommission", e2e.app_id, sid, "--yes")
    assert res.code == 5, res.err
    assert e2e.sandbox.delete_count(sid) == 0


def test_skip_provider_revokes_without_receipt(e2e: E2E) -> None:
    """--skip-provider warns, sends no DELETE, and the registry revokes."""
    sid = e2e.sandbox.service_ids[0]
    res = e2e.cli("-o", "json", "decommission", e2e.app_id, sid, "--yes", "--skip-provider")
    assert res.code == 0, res.err
    assert "warning" in res.err
    assert res.json()["receipt_id"] is None
    assert e2e.sandbox.delete_count(sid) == 0
    assert e2e.sandbox.binding_status(sid) == "REVOKED"


def test_retain_is_recorded_by_provider(e2e: E2E) -> None:
    """--data-handling retain reaches the provider and comes back in the receipt."""
    sid = e2e.sandbox.service_ids[0]
    res = e2e.cli(
        "-o", "json", "decommission", e2e.app_id, sid, "--yes", "--data-handling", "retain"
    )
    assert res.code == 0, res.err
    assert res.json()["receipt"]["data"]["data_handling"] == "retain"


def test_purge_target_down_still_revokes(e2e: E2E) -> None:
    """A failed purge delivery is reported but does not undo the revocation."""
    e2e.sandbox.faults.registry("purge_target_down")
    sid = e2e.sandbox.service_ids[0]
    res = e2e.cli("-o", "json", "decommission", e2e.app_id, sid, "--yes")
    assert res.code == 0, res.err
    statuses = {p["target"]: p["status"] for p in res.json()["propagation"]}
    assert statuses["billing"] == "failed"
    assert "purge not yet delivered" in res.err


def test_record_for_other_service_is_exit_5(e2e: E2E) -> None:
    """A revocation record naming another service fails verification (exit 5)."""
    e2e.sandbox.faults.registry("record_for_other_service")
    sid = e2e.sandbox.service_ids[0]
    res = e2e.cli("decommission", e2e.app_id, sid, "--yes")
    assert res.code == 5, res.err


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["decommission", "not-an-app", "svc", "--yes"], "AppID"),
        (["decommission", "org.omiappreg.alice.shop.7f8a9d", "bad/id", "--yes"], "service id"),
        (
            [
                "decommission",
                "org.omiappreg.alice.shop.7f8a9d",
                "svc",
                "--yes",
                "--data-handling",
                "shred",
            ],
            "data-handling",
        ),
        (["decommission", "org.omiappreg.alice.shop.7f8a9d", "--all"], "--yes"),
        (["decommission", "--from", "x.json", "org.omiappreg.alice.shop.7f8a9d"], "--from"),
    ],
)
def test_usage_errors(e2e: E2E, args: list[str], fragment: str) -> None:
    """Bad arguments: exit 2, one clear line naming the problem."""
    res = e2e.cli(*args)
    assert res.code == 2
    assert fragment in res.err


def test_dry_run_output_cannot_be_replayed(e2e: E2E) -> None:
    """A dry run's printed DELETE, replayed against the provider, is refused as stale."""
    import httpx

    sid = e2e.sandbox.service_ids[0]
    doc = e2e.cli("-o", "json", "decommission", e2e.app_id, sid, "--dry-run").json()
    answer = httpx.request(
        "DELETE",
        e2e.sandbox.service(sid).endpoint_url,
        json=doc["dry_run"]["termination_request"],
        timeout=5,
    )
    assert answer.status_code == 401
    assert answer.json()["type"] == "urn:omi:error:stale_request"
    assert e2e.sandbox.binding_status(sid) == "ACTIVE"


def test_revoked_by_someone_else_while_partial_is_success(
    e2e: E2E, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exit 8, then a colleague revokes with --skip-provider: the re-run ends exit 0."""
    sid = e2e.sandbox.service_ids[0]
    e2e.sandbox.faults.registry("down")
    assert e2e.cli("decommission", e2e.app_id, sid, "--yes").code == 8
    e2e.sandbox.faults.clear()
    mine = e2e.home
    monkeypatch.setenv("OMICTL_HOME", str(tmp_path / "colleague"))
    assert e2e.cli("decommission", e2e.app_id, sid, "--yes", "--skip-provider").code == 0
    monkeypatch.setenv("OMICTL_HOME", str(mine))
    res = e2e.cli("-o", "json", "decommission", e2e.app_id, sid, "--yes")
    assert res.code == 0, res.err
    assert res.json()["already_revoked"] is True
    assert e2e.sandbox.delete_count(sid) == 1
    again = e2e.cli("-o", "json", "decommission", e2e.app_id, sid, "--yes")
    assert again.code == 0 and again.json()["already_revoked"] is True


def test_verify_with_wrong_service_key_fails(e2e: E2E, tmp_path: Path) -> None:
    """receipts verify --service-key with another key: exit 5."""
    sid = e2e.sandbox.service_ids[0]
    doc = e2e.cli("-o", "json", "decommission", e2e.app_id, sid, "--yes").json()
    good = e2e.sandbox.service(sid).public_key.hex()
    assert e2e.cli("receipts", "verify", doc["bundle"], "--service-key", good).code == 0
    bad = Signer(secrets.token_bytes(32)).public_key.hex()
    assert e2e.cli("receipts", "verify", doc["bundle"], "--service-key", bad).code == 5


def test_status_pins_the_registry_key_and_refuses_a_changed_one(e2e: E2E) -> None:
    """status checks the registry's key like every contact (docs/workflow.md): the first
    contact pins it (with a warning), a registry presenting another key is exit 5."""
    first = e2e.cli("-o", "json", "status", e2e.app_id)
    assert first.code == 0, first.err
    assert "first contact" in first.err and "pinned its key" in first.err
    pinned = e2e.cli("-o", "json", "registry", "show").json()
    assert first.json()["registry_key_id"] == pinned["key_id"]
    again = e2e.cli("status", e2e.app_id)
    assert "first contact" not in again.err  # once
    header, *rows = again.out.splitlines()
    assert header.split() == ["SERVICE", "STATUS", "TYPE", "ENDPOINT"]
    assert [r.split()[0] for r in rows] == list(e2e.sandbox.service_ids)
    other = Signer(secrets.token_bytes(32)).public_key.hex()
    e2e.cli("registry", "pin", e2e.sandbox.registry_url, "--public-key", other)
    refused = e2e.cli("status", e2e.app_id)
    assert refused.code == 5 and "may be impersonated" in refused.err
    assert refused.out == ""  # the impostor's listing is not shown


def test_receipts_verify_refuses_an_empty_expected_key(e2e: E2E, tmp_path: Path) -> None:
    """`--master-key "$UNSET"` must not verify against the bundle's own keys (exit 2)."""
    sid = e2e.sandbox.service_ids[0]
    bundle = e2e.cli("-o", "json", "decommission", e2e.app_id, sid, "--yes").json()["bundle"]
    for option in ("--master-key", "--service-key", "--registry-key"):
        res = e2e.cli("receipts", "verify", bundle, option, "")
        assert res.code == 2, (option, res.err)
        assert option in res.err


def test_a_skip_provider_bundle_does_not_claim_a_wipe(e2e: E2E) -> None:
    """receipts verify on a --skip-provider bundle: verified (the revocation), but it says
    no receipt shows a wipe, and the service key it never used is not "taken from it"."""
    sid = e2e.sandbox.service_ids[0]
    doc = e2e.cli("-o", "json", "decommission", e2e.app_id, sid, "--yes", "--skip-provider")
    bundle = doc.json()["bundle"]
    res = e2e.cli("-o", "json", "receipts", "verify", bundle)
    assert res.code == 0
    report = res.json()
    assert report["provider_terminated"] is False
    assert report["keys_from_bundle"] == ["master", "registry"]
    assert any("not asked to wipe" in check for check in report["checks"])
    text = e2e.cli("receipts", "verify", bundle)
    assert "receipt=(none)" in text.out
    assert "does not show that the provider wiped anything" in text.err


def test_a_damaged_or_odd_bundle_is_reported_not_hidden(e2e: E2E) -> None:
    """One bundle cut short and one with a string created_at: list still lists the good
    one, names the damaged file (stderr, and "unreadable" in JSON), and show of the damaged
    receipt says its file cannot be read instead of "no receipt"."""
    first, second, third = e2e.sandbox.service_ids
    docs = [
        e2e.cli("-o", "json", "decommission", e2e.app_id, sid, "--yes").json()
        for sid in (first, second, third)
    ]
    odd = Path(docs[1]["bundle"])
    odd.write_text(json.dumps({**json.loads(odd.read_text()), "created_at": "2026-01-01"}))
    damaged = Path(docs[0]["bundle"])
    damaged.write_bytes(damaged.read_bytes()[:100])
    stray = damaged.with_name("notes.json")  # JSON, but no bundle: not a row of Nones
    stray.write_text("{}")
    listed = e2e.cli("-o", "json", "receipts", "list")
    assert listed.code == 0, listed.err
    assert [r["receipt_id"] for r in listed.json()["receipts"]] == [
        docs[1]["receipt_id"],  # created_at unknown: first
        docs[2]["receipt_id"],
    ]
    assert sorted(u["path"] for u in listed.json()["unreadable"]) == sorted(
        [str(damaged), str(stray)]
    )
    assert str(damaged) in listed.err
    shown = e2e.cli("receipts", "show", docs[0]["receipt_id"])
    assert shown.code == 2
    assert "cannot be read" in shown.err and str(damaged) in shown.err


def test_peer_words_in_receipts_output_cannot_drive_the_terminal(e2e: E2E, tmp_path: Path) -> None:
    """A bundle that verifies (it brings its own keys) with escape sequences in its ids:
    nothing on stdout or stderr carries an ESC byte."""
    from omictl.core.envelope import sign_envelope
    from omictl.core.evidence import build_bundle

    master, service, registry = (Signer(secrets.token_bytes(32)) for _ in range(3))
    app, sid, rid = (
        e2e.app_id,
        "cms-article-1",
        "RCPT-\x1b[2J\x1b]8;;http://x\x07ALL CLEAR\nVERIFIED forged/line receipt=RCPT-0",
    )
    stamp = 1_790_000_000
    term = sign_envelope(
        {
            "app_id": app,
            "service_id": sid,
            "context": "permanent_termination",
            "timestamp": stamp,
            "nonce": "n" * 32,
            "data_handling": "wipe",
        },
        master,
    ).to_json()
    receipt = sign_envelope(
        {
            "app_id": app,
            "service_id": sid,
            "status": "success",
            "receipt_id": rid,
            "message": "ok",
            "data_handling": "wipe",
        },
        service,
    ).to_json()
    unbind = sign_envelope(
        {
            "app_id": app,
            "service_id": sid,
            "context": "decommission",
            "timestamp": stamp,
            "nonce": "m" * 32,
            "provider_receipt": receipt,
        },
        master,
    ).to_json()
    record = sign_envelope(
        {
            "app_id": app,
            "service_id": sid,
            "status": "REVOKED",
            "revoked_at": stamp,
            "context": "revocation_record",
            "receipt_id": rid,
            "propagation": [],
        },
        registry,
    ).to_json()
    bundle = build_bundle(
        app_id=app,
        service_id=sid,
        created_at=stamp,
        registry_url="http://127.0.0.1:1",
        master_public_key=master.public_key,
        service_public_key=service.public_key,
        registry_public_key=registry.public_key,
        termination_request=term,
        receipt=receipt,
        unbind_request=unbind,
        revocation_record=record,
    )
    path = e2e.home / "receipts" / app / "hostile.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(bundle))
    for args in (("receipts", "verify", str(path)), ("receipts", "list")):
        res = e2e.cli(*args)
        assert res.code == 0, res.err
        assert "\x1b" not in res.out and "\x07" not in res.out, args
        assert "\x1b" not in res.err and "\x07" not in res.err, args
        assert "\\u001b" in res.out
        assert "\nVERIFIED forged" not in res.out, args  # no line of the peer's own


def test_receipts_export_makes_no_folder(e2e: E2E, tmp_path: Path) -> None:
    """Like keys export: a missing folder is exit 2 with a hint, not created silently."""
    sid = e2e.sandbox.service_ids[0]
    rid = e2e.cli("-o", "json", "decommission", e2e.app_id, sid, "--yes").json()["receipt_id"]
    res = e2e.cli("receipts", "export", rid, "--out", str(tmp_path / "no" / "such" / "b.json"))
    assert res.code == 2 and "does not exist" in res.err and "hint:" in res.err
    assert not (tmp_path / "no").exists()


def test_receipts_export_to_stdout_and_not_onto_a_folder(
    e2e: E2E, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--out - writes the bundle to stdout (no file named "-"); --out '' or a folder is
    exit 2 naming it."""
    sid = e2e.sandbox.service_ids[0]
    rid = e2e.cli("-o", "json", "decommission", e2e.app_id, sid, "--yes").json()["receipt_id"]
    monkeypatch.chdir(tmp_path)
    res = e2e.cli("receipts", "export", rid, "--out", "-")
    assert res.code == 0 and res.json()["termination_receipt"]["data"]["receipt_id"] == rid
    assert not (tmp_path / "-").exists()
    for where in ("", str(tmp_path)):
        res = e2e.cli("receipts", "export", rid, "--out", where)
        assert res.code == 2 and "is a folder" in res.err


def test_a_batch_that_skips_providers_warns_as_loudly_as_one_service(e2e: E2E) -> None:
    """--all --skip-provider: the listing's warning says the tenants are not wiped; a dry
    run's listing says "would be", and nothing is sent."""
    res = e2e.cli("decommission", e2e.app_id, "--all", "--skip-provider", "--yes", "--dry-run")
    assert res.code == 0, res.err
    assert "3 ACTIVE binding(s)" in res.err and "would be decommissioned" in res.err
    assert "WITHOUT a provider receipt" in res.err
    assert all(e2e.sandbox.binding_status(s) == "ACTIVE" for s in e2e.sandbox.service_ids)


@pytest.mark.parametrize("batch", [False, True], ids=["one-service", "batch"])
def test_insecure_says_so_loudly_once_per_host(
    e2e: E2E, monkeypatch: pytest.MonkeyPatch, batch: bool
) -> None:
    """PROTOCOL.md section 6: plain http to a non-loopback host only with --insecure, "that
    says so loudly". The sandbox's 127.0.0.1 is made to count as remote: without
    --insecure nothing is sent (exit 2); with it the run goes on and warns once for the
    registry and once for the service endpoints' host, never once per service."""
    from omictl.transport import urls

    monkeypatch.setattr(urls, "is_loopback_host", lambda host: False)
    sid = e2e.sandbox.service_ids[0]
    args = ["--all", "--concurrency", "2"] if batch else [sid]
    refused = e2e.cli("decommission", e2e.app_id, *args, "--yes")
    assert refused.code == 2 and "refusing plain http://" in refused.err
    assert all(e2e.sandbox.delete_count(s) == 0 for s in e2e.sandbox.service_ids)
    res = e2e.cli("decommission", e2e.app_id, *args, "--yes", "--insecure")
    assert res.code == 0, res.err
    warnings = [line for line in res.err.splitlines() if "--insecure:" in line]
    assert len(warnings) == 2, res.err
    assert "the registry 127.0.0.1" in warnings[0] and "plain HTTP" in warnings[0]
    assert "the service endpoint 127.0.0.1" in warnings[1]
    if not batch:  # said with the plan, before consent and before the DELETE
        lines = res.err.splitlines()
        said = lines.index(warnings[1])
        assert said < next(i for i, line in enumerate(lines) if "confirm:" in line)
    if not batch:  # a dry run sends nothing, and says it all the same
        other = e2e.sandbox.service_ids[1]
        dry = e2e.cli("decommission", e2e.app_id, other, "--dry-run", "--insecure")
        assert dry.code == 0 and dry.err.count("--insecure:") == 2, dry.err


def test_a_provider_that_refuses_the_connection_is_not_said_to_have_been_reached(
    e2e: E2E,
) -> None:
    """--endpoint at a local port where nothing listens: exit 6, the hint names that
    host (not OMICTL_REGISTRY), and does not say the DELETE may have reached the
    provider: no try connected."""
    sid = e2e.sandbox.service_ids[0]
    with socket.socket() as probe:  # a free port: bound, then released
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}/gone"
    res = e2e.cli("-o", "json", "decommission", e2e.app_id, sid, "--yes", "--endpoint", endpoint)
    assert res.code == 6, res.err
    error = res.json()["error"]
    assert error["details"]["never_sent"] is True
    assert "may have reached" not in error["hint"] and "OMICTL_REGISTRY" not in error["hint"]
    assert f"127.0.0.1:{port}" in error["hint"]
