"""The decommission workflow, offline, against in-memory registry and provider fakes."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from omictl.core.envelope import Signer
from omictl.core.evidence import verify_bundle
from omictl.errors import (
    Aborted,
    ExitCode,
    PartiallyDone,
    UsageError,
    VerificationError,
)
from omictl.workflow.archive import Archive
from omictl.workflow.decommission import Deps, StepEvent, Target, decommission
from omictl.workflow.journal import JournalStore
from tests.workflow.fakes import APP_ID, FakeProvider, FakeRegistry, FakeWorld

SERVICE = "cms-article-77"


@pytest.fixture
def world() -> FakeWorld:
    w = FakeWorld()
    w.add_service(SERVICE)
    w.add_service("search-2")
    return w


def make_deps(world: FakeWorld, home: Path, **kw: Any) -> Deps:
    events: list[StepEvent] = kw.pop("events_list", [])
    params: dict[str, Any] = {
        "registry": FakeRegistry(world),
        "provider": FakeProvider(world),
        "signer": world.master,
        "journals": JournalStore(home / "state"),
        "archive": Archive(home / "receipts"),
        "registry_url": "https://registry.example",
        "events": events.append,
        "clock": lambda: world.now,
    }
    params.update(kw)
    return Deps(**params)


def test_happy_path_revokes_and_archives(world: FakeWorld, tmp_path: Path) -> None:
    """One DELETE, one unbind, status REVOKED, and a bundle that verifies offline."""
    result = decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path))
    assert result.status == "REVOKED"
    assert world.status[SERVICE] == "REVOKED"
    assert len(world.deletes) == 1 and len(world.unbinds) == 1
    assert result.receipt_id == world.receipts[SERVICE]["data"]["receipt_id"]
    assert world.unbinds[0]["data"]["provider_receipt"] == world.receipts[SERVICE]
    assert result.bundle is not None
    report = verify_bundle(Archive.load(Path(result.bundle)))
    assert report.receipt_id == result.receipt_id
    assert [s["step"] for s in result.steps] == [
        "resolve",
        "confirm",
        "terminate",
        "verify_receipt",
        "unbind",
        "verify_record",
        "archive",
        "check_revoked",
    ]


def test_wrong_master_key_sends_nothing(world: FakeWorld, tmp_path: Path) -> None:
    """A local key that is not the app's master key fails (exit 5) before any DELETE."""
    deps = make_deps(world, tmp_path, signer=Signer(bytes(32)))
    with pytest.raises(VerificationError) as info:
        decommission(Target(APP_ID, SERVICE), deps)
    assert info.value.exit_code == ExitCode.VERIFICATION
    assert info.value.code == "wrong_master_key"
    assert world.deletes == [] and world.unbinds == []


@pytest.mark.parametrize("mode", ["forged", "other_service", "failed_status"])
def test_bad_receipt_stops_before_unbind(world: FakeWorld, tmp_path: Path, mode: str) -> None:
    """A forged, misaddressed or unsuccessful receipt: exit 5, no unbind, answer kept."""
    world.provider_mode = mode
    with pytest.raises(VerificationError) as info:
        decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path))
    assert info.value.exit_code == ExitCode.VERIFICATION
    assert world.unbinds == []
    assert world.status[SERVICE] == "ACTIVE"
    kept = list((tmp_path / "receipts" / "rejected").rglob("*.json"))
    assert len(kept) == 1
    assert json.loads(kept[0].read_text())["answer"]["data"]["app_id"] == APP_ID


def test_registry_down_after_wipe_is_partial_then_resumes(world: FakeWorld, tmp_path: Path) -> None:
    """Registry down after the wipe: exit 8; re-run: REVOKED, same receipt, no 2nd DELETE."""
    world.registry_mode = "down"
    with pytest.raises(PartiallyDone) as info:
        decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path))
    assert info.value.exit_code == ExitCode.PARTIAL
    receipt_id = world.receipts[SERVICE]["data"]["receipt_id"]
    assert info.value.details["receipt_id"] == receipt_id
    world.registry_mode = "ok"
    result = decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path))
    assert result.status == "REVOKED"
    assert result.receipt_id == receipt_id
    assert result.resumed_from == "unbind_sent"
    assert len(world.deletes) == 1
    assert len(world.unbinds) == 2


def test_provider_down_is_unavailable_and_retry_completes(world: FakeWorld, tmp_path: Path) -> None:
    """Provider down: exit 6 with nothing revoked; a re-run sends a fresh DELETE."""
    world.provider_mode = "down"
    with pytest.raises(Exception) as info:
        decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path))
    assert getattr(info.value, "exit_code", None) == ExitCode.UNAVAILABLE
    assert world.unbinds == []
    world.provider_mode = "ok"
    result = decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path))
    assert result.status == "REVOKED"
    assert result.resumed_from == "termination_sent"
    nonces = {d["data"]["nonce"] for d in world.deletes}
    assert len(nonces) == 2


def test_already_revoked_is_success_with_nothing_sent(world: FakeWorld, tmp_path: Path) -> None:
    """A binding already REVOKED: status REVOKED, already_revoked, nothing sent."""
    world.status[SERVICE] = "REVOKED"
    result = decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path))
    assert result.status == "REVOKED" and result.already_revoked
    assert world.deletes == [] and world.unbinds == []


def test_rerun_after_success_sends_nothing(world: FakeWorld, tmp_path: Path) -> None:
    """Re-running a finished decommission reports the held record and sends nothing."""
    first = decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path))
    second = decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path))
    assert second.already_revoked and second.receipt_id == first.receipt_id
    assert second.revocation_record == first.revocation_record
    assert len(world.deletes) == 1 and len(world.unbinds) == 1


def test_dry_run_sends_nothing(world: FakeWorld, tmp_path: Path) -> None:
    """--dry-run signs both envelopes, sends neither, writes no journal."""
    result = decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path, dry_run=True))
    assert result.status == "DRY_RUN"
    assert result.dry_run is not None
    assert result.dry_run["termination_request"]["data"]["context"] == "permanent_termination"
    assert result.dry_run["unbind_request"]["data"]["context"] == "decommission"
    assert world.deletes == [] and world.unbinds == []
    assert not (tmp_path / "state").exists()


def test_declined_prompt_sends_nothing(world: FakeWorld, tmp_path: Path) -> None:
    """A declined confirmation raises Aborted (exit 7) with nothing sent."""
    with pytest.raises(Aborted) as info:
        decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path, confirm=lambda p: False))
    assert info.value.exit_code == ExitCode.ABORTED
    assert world.deletes == [] and world.unbinds == []


def test_skip_provider_unbinds_without_receipt(world: FakeWorld, tmp_path: Path) -> None:
    """--skip-provider: no DELETE; the unbind carries no receipt; still REVOKED."""
    result = decommission(Target(APP_ID, SERVICE, skip_provider=True), make_deps(world, tmp_path))
    assert result.status == "REVOKED" and result.receipt_id is None
    assert world.deletes == []
    assert "provider_receipt" not in world.unbinds[0]["data"]
    assert result.bundle is not None
    assert verify_bundle(Archive.load(Path(result.bundle))).receipt_id is None


def test_resume_refuses_changed_data_handling(world: FakeWorld, tmp_path: Path) -> None:
    """Resuming an in-flight DELETE with another --data-handling is a usage error."""
    world.provider_mode = "down"
    with pytest.raises(Exception):
        decommission(Target(APP_ID, SERVICE, "wipe"), make_deps(world, tmp_path))
    world.provider_mode = "ok"
    with pytest.raises(UsageError):
        decommission(Target(APP_ID, SERVICE, "retain"), make_deps(world, tmp_path))


class Crash(BaseException):
    """Simulates the process dying at a step boundary (not an OmictlError)."""


@pytest.mark.parametrize("crash_at", range(1, 8))
def test_crash_at_any_step_then_rerun_completes(
    world: FakeWorld, tmp_path: Path, crash_at: int
) -> None:
    """Dying after the Nth journal write, then re-running: REVOKED, one wipe at most."""
    import omictl.workflow.journal as journal_mod

    real_save = journal_mod.JournalStore.save
    calls = [0]

    def crashing_save(self: Any, *args: Any, **kwargs: Any) -> None:
        real_save(self, *args, **kwargs)
        calls[0] += 1
        if calls[0] == crash_at:
            raise Crash

    journal_mod.JournalStore.save = crashing_save  # type: ignore[method-assign]
    try:
        with pytest.raises(Crash):
            decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path))
    except pytest.fail.Exception:
        pass  # fewer journal writes than crash_at: the run completed
    finally:
        journal_mod.JournalStore.save = real_save  # type: ignore[method-assign]
    result = decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path))
    assert result.status == "REVOKED"
    assert world.status[SERVICE] == "REVOKED"
    assert len(world.deletes) == 1  # exactly one DELETE reached the provider
    assert len(world.receipts) == 1
    if result.bundle:
        verify_bundle(Archive.load(Path(result.bundle)))


def test_receipt_with_other_data_handling_is_refused(world: FakeWorld, tmp_path: Path) -> None:
    """A receipt saying 'retain' when 'wipe' was asked: exit 5, no unbind."""
    world.receipt_handling = "retain"
    with pytest.raises(VerificationError) as info:
        decommission(Target(APP_ID, SERVICE, "wipe"), make_deps(world, tmp_path))
    assert info.value.code == "invalid_receipt"
    assert "retain" in info.value.message
    assert world.unbinds == []


def test_receipt_with_matching_data_handling_is_accepted(world: FakeWorld, tmp_path: Path) -> None:
    """A receipt stating the requested handling is accepted and reported."""
    world.receipt_handling = "retain"
    result = decommission(Target(APP_ID, SERVICE, "retain"), make_deps(world, tmp_path))
    assert (result.status, result.data_handling) == ("REVOKED", "retain")


def test_rejected_receipt_resume_needs_same_data_handling(world: FakeWorld, tmp_path: Path) -> None:
    """After a rejected receipt, re-running with another --data-handling is a usage error."""
    world.provider_mode = "forged"
    with pytest.raises(VerificationError):
        decommission(Target(APP_ID, SERVICE, "retain"), make_deps(world, tmp_path))
    world.provider_mode = "ok"
    with pytest.raises(UsageError):
        decommission(Target(APP_ID, SERVICE, "wipe"), make_deps(world, tmp_path))
    assert len(world.deletes) == 1


def test_dry_run_envelopes_are_back_dated(world: FakeWorld, tmp_path: Path) -> None:
    """Dry-run envelopes carry a timestamp a day old, outside every receiver's window."""
    result = decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path, dry_run=True))
    assert result.dry_run is not None
    for name in ("termination_request", "unbind_request"):
        assert result.dry_run[name]["data"]["timestamp"] == world.now - 86_400


def test_registry_still_listing_after_its_record_fails_like_a_batch(
    world: FakeWorld, tmp_path: Path
) -> None:
    """The re-read contradicts the signed record: exit 5, a failed step, record reported."""

    class Stuck(FakeRegistry):
        def get_binding(self, app_id: str, service_id: str) -> Any:
            binding = super().get_binding(app_id, service_id)
            return replace(binding, status="ACTIVE")

    with pytest.raises(VerificationError, match="still lists it ACTIVE") as info:
        decommission(
            Target(APP_ID, SERVICE),
            make_deps(world, tmp_path, registry=Stuck(world), known_binding=world.binding(SERVICE)),
        )
    result = info.value.details["result"]
    assert result["status"] == "FAILED" and result["exit_code"] == 5
    assert result["steps"][-1]["step"] == "check_revoked"
    assert result["steps"][-1]["status"] == "failed"
    assert result["revocation_record"] == world.records[SERVICE]
    assert result["bundle"] is not None


def test_a_huge_rejected_answer_is_not_copied_into_the_journal(
    world: FakeWorld, tmp_path: Path
) -> None:
    """The journal keeps a pointer to the archived answer, not a megabyte per re-run."""

    class Bloated(FakeProvider):
        def terminate(self, endpoint_url: str, *, sign: Any) -> Any:
            sign()
            return {"junk": "x" * 200_000}

    with pytest.raises(VerificationError):
        decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path, provider=Bloated(world)))
    journal = JournalStore(tmp_path / "state").load(APP_ID, SERVICE)
    assert journal.phase == "receipt_rejected"
    assert journal.rejected_receipt is not None
    assert set(journal.rejected_receipt) == {"omitted", "kept_at"}
    kept = Path(journal.rejected_receipt["kept_at"])
    assert json.loads(kept.read_text())["answer"] == {"junk": "x" * 200_000}
    assert JournalStore(tmp_path / "state").path_for(APP_ID, SERVICE).stat().st_size < 20_000


def test_revoked_by_another_request_reports_that_record(world: FakeWorld, tmp_path: Path) -> None:
    """A 409 already_revoked carrying someone else's record: exit 0, and that record shown."""
    from omictl.errors import RemoteRejected
    from omictl.transport.registry import AlreadyRevoked

    class Raced(FakeRegistry):
        def unbind(self, app_id: str, service_id: str, *, sign: Any) -> Any:
            sign()
            verified = self.revoke(service_id, "RCPT-SOMEONE-ELSE", propagation=[])
            rejection = RemoteRejected("already revoked", status=409, problem_type="about:blank")
            raise AlreadyRevoked(rejection, record=verified)

    result = decommission(
        Target(APP_ID, SERVICE),
        make_deps(world, tmp_path, registry=Raced(world), known_binding=world.binding(SERVICE)),
    )
    assert (result.status, result.exit_code, result.already_revoked) == ("REVOKED", 0, True)
    assert result.revocation_record == world.records[SERVICE]
    assert result.bundle is None  # their record does not name our receipt


def test_a_refused_reread_is_a_failed_step(world: FakeWorld, tmp_path: Path) -> None:
    """The re-read refused (4xx): that exit code, and the step says so (as in a batch)."""
    from omictl.errors import RemoteRejected

    class Refusing(FakeRegistry):
        def get_binding(self, app_id: str, service_id: str) -> Any:
            raise RemoteRejected(
                "binding lookup was rejected (HTTP 403)", status=403, problem_type=""
            )

    with pytest.raises(RemoteRejected) as info:
        decommission(
            Target(APP_ID, SERVICE),
            make_deps(
                world, tmp_path, registry=Refusing(world), known_binding=world.binding(SERVICE)
            ),
        )
    result = info.value.details["result"]
    assert result["exit_code"] == 4
    assert result["steps"][-1] == {
        "step": "check_revoked",
        "status": "failed",
        "message": "binding lookup was rejected (HTTP 403)",
    }


def test_reruns_with_a_large_receipt_keep_the_journal_small(
    world: FakeWorld, tmp_path: Path
) -> None:
    """A 900 KB receipt (valid, extra fields allowed) and a registry down for three runs:
    the journal holds the receipt once, so it never nears its 8 MiB read limit."""

    class Padded(FakeProvider):
        def terminate(self, endpoint_url: str, *, sign: Any) -> Any:
            answer = super().terminate(endpoint_url, sign=sign)
            if "padding" not in answer["data"]:
                from omictl.core.envelope import sign_envelope

                data = {**answer["data"], "padding": "x" * 900_000}
                answer = sign_envelope(data, self.w.services[SERVICE]).to_json()
                self.w.receipts[SERVICE] = answer
            return answer

    world.registry_mode = "down"
    for _ in range(3):
        with pytest.raises(PartiallyDone):
            decommission(
                Target(APP_ID, SERVICE), make_deps(world, tmp_path, provider=Padded(world))
            )
    world.registry_mode = "ok"
    result = decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path))
    assert result.status == "REVOKED"
    log = JournalStore(tmp_path / "state").path_for(APP_ID, SERVICE)
    assert log.stat().st_size < 1_000_000
    assert len(world.deletes) == 1  # the held receipt was reused by every re-run
    assert result.bundle is not None
    bundle = Archive.load(Path(result.bundle))
    assert bundle["unbind_request"]["data"]["provider_receipt"] == world.receipts[SERVICE]
    verify_bundle(bundle)


def test_a_provider_cannot_bloat_the_journal_through_the_error_message(
    world: FakeWorld, tmp_path: Path
) -> None:
    """A signed receipt whose status is 400 KB: the reason quotes 80 characters of it."""
    from omictl.core.envelope import sign_envelope

    class Loud(FakeProvider):
        def terminate(self, endpoint_url: str, *, sign: Any) -> Any:
            sign()
            data = {
                "app_id": APP_ID,
                "service_id": SERVICE,
                "status": "no" * 200_000,
                "receipt_id": "RCPT-1",
            }
            return sign_envelope(data, self.w.services[SERVICE]).to_json()

    for _ in range(3):
        with pytest.raises(VerificationError) as info:
            decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path, provider=Loud(world)))
        assert len(info.value.message) < 300
    journal = JournalStore(tmp_path / "state").load(APP_ID, SERVICE)
    assert journal.rejection_reason is not None and len(journal.rejection_reason) < 300
    # the answer itself (400 KB) is archived whole, and only referred to by the journal
    assert JournalStore(tmp_path / "state").path_for(APP_ID, SERVICE).stat().st_size < 50_000


def test_peer_values_in_errors_are_cut_short() -> None:
    """An envelope's unsigned version, or a record's receipt id, cannot make a message huge."""
    from omictl.core.envelope import EnvelopeError, parse_envelope
    from omictl.core.messages import verify_revocation_record

    with pytest.raises(EnvelopeError) as info:
        parse_envelope({"version": "v" * 100_000, "data": {}, "signature": "00" * 64})
    assert len(info.value.message) < 200

    registry = Signer(bytes(range(32)))
    from omictl.core.envelope import sign_envelope

    record = sign_envelope(
        {
            "app_id": APP_ID,
            "service_id": SERVICE,
            "status": "REVOKED",
            "revoked_at": 1,
            "context": "revocation_record",
            "receipt_id": "R" * 300,
            "propagation": [],
        },
        registry,
    ).to_json()
    with pytest.raises(VerificationError, match="at most 256 characters"):
        verify_revocation_record(
            record, registry_public_key=registry.public_key, app_id=APP_ID, service_id=SERVICE
        )


class _Timeline:
    """What reached the disk and the network, in order: journal saves, fdatasyncs, and
    requests leaving (after their signing callback returned)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import omictl.workflow.journal as journal_mod

        self.events: list[tuple[str, str]] = []
        real = journal_mod._fdatasync
        monkeypatch.setattr(
            journal_mod, "_fdatasync", lambda fd: (self.events.append(("sync", "")), real(fd))
        )
        timeline = self

        class Store(JournalStore):
            def save(self, journal: Any, *, phase: str, **kw: Any) -> None:
                timeline.events.append(("save", phase))  # its write comes before its sync
                super().save(journal, phase=phase, **kw)

        self.store_type = Store

    def leaves(self, what: str) -> None:
        self.events.append(("leaves", what))

    def unsynced_saves_before(self, index: int) -> list[str]:
        """Phases saved before ``index`` with no fdatasync between them and ``index``."""
        pending: list[str] = []
        for kind, what in self.events[:index]:
            if kind == "save":
                pending.append(what)
            elif kind == "sync":
                pending = []
        return pending

    def check(self) -> None:
        for index, (kind, _) in enumerate(self.events):
            if kind == "leaves":
                assert self.unsynced_saves_before(index) == [], self.events
        assert self.unsynced_saves_before(len(self.events)) == [], self.events


def _timed_deps(world: FakeWorld, home: Path, timeline: _Timeline, **kw: Any) -> Deps:
    class Provider(FakeProvider):
        def terminate(self, endpoint_url: str, *, sign: Any) -> Any:
            def signed() -> Any:
                env = sign()
                timeline.leaves("DELETE")
                return env

            return super().terminate(endpoint_url, sign=signed)

    class Registry(FakeRegistry):
        def unbind(self, app_id: str, service_id: str, *, sign: Any) -> Any:
            def signed() -> Any:
                env = sign()
                timeline.leaves("unbind")
                return env

            return super().unbind(app_id, service_id, sign=signed)

    params: dict[str, Any] = {
        "provider": Provider(world),
        "registry": Registry(world),
        "journals": timeline.store_type(home / "state"),
    }
    params.update(kw)
    return make_deps(world, home, **params)


def test_every_record_is_durable_before_the_request_it_guards_and_at_the_end(
    world: FakeWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two records are written without their own fdatasync (receipt_held, revoked); the
    next one's covers them, so nothing leaves and nothing returns before they are on disk."""
    timeline = _Timeline(monkeypatch)
    result = decommission(Target(APP_ID, SERVICE), _timed_deps(world, tmp_path, timeline))
    assert result.status == "REVOKED"
    saves = [what for kind, what in timeline.events if kind == "save"]
    assert saves == ["termination_sent", "receipt_held", "unbind_sent", "revoked", "done"]
    syncs = [kind for kind, _ in timeline.events].count("sync")
    assert syncs == 3  # the journal's fdatasyncs: 3 for 5 records
    timeline.check()


def test_a_failure_before_the_unbind_is_signed_still_syncs_the_receipt(
    world: FakeWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The registry fails before the unbind is signed: the held receipt (written without
    its own fdatasync) is synced before decommission() gives up, and a re-run resumes."""
    from omictl.errors import RemoteUnavailable

    timeline = _Timeline(monkeypatch)

    class Unreachable(FakeRegistry):
        def unbind(self, app_id: str, service_id: str, *, sign: Any) -> Any:
            raise RemoteUnavailable("connection refused (fake), before any signing")

    deps = _timed_deps(world, tmp_path, timeline, registry=Unreachable(world))
    with pytest.raises(PartiallyDone):
        decommission(Target(APP_ID, SERVICE), deps)
    assert [what for kind, what in timeline.events if kind == "save"][-1] == "receipt_held"
    timeline.check()
    result = decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path))
    assert result.status == "REVOKED" and result.resumed_from == "receipt_held"
    assert len(world.deletes) == 1


def test_a_failed_bundle_write_still_syncs_the_revocation_record(
    world: FakeWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from omictl.errors import OmictlError

    timeline = _Timeline(monkeypatch)

    class Full(Archive):
        def save_bundle(self, bundle: dict[str, Any]) -> Path:
            raise OmictlError("cannot write the bundle: No space left on device (fake)")

    deps = _timed_deps(world, tmp_path, timeline, archive=Full(tmp_path / "receipts"))
    with pytest.raises(OmictlError, match="No space left"):
        decommission(Target(APP_ID, SERVICE), deps)
    assert [what for kind, what in timeline.events if kind == "save"][-1] == "revoked"
    timeline.check()
    journal = JournalStore(tmp_path / "state").load(APP_ID, SERVICE)
    assert journal.phase == "revoked" and journal.revocation_record is not None


class _LosesTheAnswer(FakeRegistry):
    """The registry revokes on the unbind, but its answer is lost: ``error`` is raised
    instead (a crash of omictl, a connection reset after the request)."""

    def __init__(self, world: FakeWorld, error: Exception) -> None:
        super().__init__(world)
        self.error = error

    def unbind(self, app_id: str, service_id: str, *, sign: Any) -> Any:
        super().unbind(app_id, service_id, sign=sign)
        raise self.error


def test_a_dry_run_of_a_revoked_binding_never_sends_or_writes(
    world: FakeWorld, tmp_path: Path
) -> None:
    """Journal at unbind_sent (our unbind landed, its answer was lost), binding REVOKED: a
    real run asks the registry again for the record; a dry run only says it would."""
    lost = _LosesTheAnswer(world, RuntimeError("the answer was lost"))
    with pytest.raises(RuntimeError):
        decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path, registry=lost))
    journal_path = JournalStore(tmp_path / "state").path_for(APP_ID, SERVICE)
    before = journal_path.read_bytes()
    sent = len(world.unbinds)
    events: list[StepEvent] = []
    result = decommission(
        Target(APP_ID, SERVICE),
        make_deps(world, tmp_path, dry_run=True, events_list=events),
    )
    assert result.status == "REVOKED"
    assert len(world.unbinds) == sent  # nothing sent
    assert journal_path.read_bytes() == before  # nothing written
    assert not (tmp_path / "receipts").exists()
    assert "a real run would ask the registry again" in events[-1].message
    real = decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path))
    assert real.bundle is not None and len(world.unbinds) == sent + 1


def test_a_journal_that_cannot_be_synced_is_named_in_the_error(
    world: FakeWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import omictl.workflow.journal as journal_mod
    from omictl.errors import RemoteUnavailable

    class Unreachable(FakeRegistry):
        def unbind(self, app_id: str, service_id: str, *, sign: Any) -> Any:
            def broken(fd: int) -> None:
                raise OSError(5, "Input/output error")

            monkeypatch.setattr(journal_mod, "_fdatasync", broken)  # from now on
            raise RemoteUnavailable("connection refused (fake), before any signing")

    with pytest.raises(PartiallyDone) as info:
        decommission(
            Target(APP_ID, SERVICE), make_deps(world, tmp_path, registry=Unreachable(world))
        )
    assert "Input/output error" in info.value.details["journal_not_synced"]
    assert "may not be on disk" in (info.value.hint or "")


class _Registry409(FakeRegistry):
    """PROTOCOL.md: an unbind of a REVOKED binding answers 409 already_revoked with the
    stored record. ``wrong_receipt`` makes the registry's own 200 answer name another
    receipt (a misbehaving registry)."""

    wrong_receipt = False

    def unbind(self, app_id: str, service_id: str, *, sign: Any) -> Any:
        from omictl.core.messages import verify_revocation_record
        from omictl.errors import RemoteRejected
        from omictl.transport.registry import AlreadyRevoked

        if self.w.status[service_id] == "REVOKED":
            self.w.unbinds.append(sign().to_json())
            raw = self.w.records[service_id]
            record = verify_revocation_record(
                raw, registry_public_key=self.registry_key(), app_id=APP_ID, service_id=service_id
            )
            problem = RemoteRejected(
                "already revoked", status=409, problem_type="urn:omi:error:already_revoked"
            )
            raise AlreadyRevoked(problem, record=record)
        if not self.wrong_receipt:
            return super().unbind(app_id, service_id, sign=sign)
        self.w.unbinds.append(sign().to_json())
        return self.revoke(service_id, "RCPT-not-yours")


def test_a_record_refused_once_is_refused_again_when_it_comes_back_in_a_409(
    world: FakeWorld, tmp_path: Path
) -> None:
    """Run 1: the registry's answer names another receipt: exit 5. Run 2: the binding is
    REVOKED, the unbind is answered 409 with that same record; it must not now pass as
    'revoked by another request' (exit 0)."""
    registry = _Registry409(world)
    registry.wrong_receipt = True
    for run in range(3):
        if run == 2:  # the registry signs its record again (its purge status moved on)
            registry.revoke(SERVICE, "RCPT-not-yours", propagation=[])
        with pytest.raises(VerificationError) as info:
            decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path, registry=registry))
        assert info.value.exit_code == ExitCode.VERIFICATION
    assert "refused its answer before" in info.value.message
    journal = JournalStore(tmp_path / "state").load(APP_ID, SERVICE)
    assert journal.phase == "unbind_sent" and journal.revocation_record is None
    assert journal.rejected_record is not None
    assert not (tmp_path / "receipts").exists()  # no bundle pairs our receipt with it


def test_another_requests_record_in_a_409_is_still_a_success(
    world: FakeWorld, tmp_path: Path
) -> None:
    """The rejected-record memory does not touch the legitimate case: revoked by someone
    else (no receipt) while our unbind was on its way."""
    registry = _Registry409(world)
    registry.revoke(SERVICE, None)  # the console, before our unbind
    world.status[SERVICE] = "ACTIVE"  # ...as our listing still saw it
    deps = make_deps(world, tmp_path, registry=registry, known_binding=world.binding(SERVICE))
    world.status[SERVICE] = "REVOKED"
    result = decommission(Target(APP_ID, SERVICE), deps)
    assert result.status == "REVOKED" and result.already_revoked and result.bundle is None


def test_a_held_receipt_is_reported_when_someone_else_revoked_the_binding(
    world: FakeWorld, tmp_path: Path
) -> None:
    from omictl.errors import RemoteUnavailable

    class Gone(FakeRegistry):
        def unbind(self, app_id: str, service_id: str, *, sign: Any) -> Any:
            raise RemoteUnavailable("connection refused (fake)")

    with pytest.raises(PartiallyDone):
        decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path, registry=Gone(world)))
    FakeRegistry(world).revoke(SERVICE, None)  # the console revokes it meanwhile
    result = decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path))
    assert result.status == "REVOKED" and result.already_revoked
    assert result.receipt_id == world.receipts[SERVICE]["data"]["receipt_id"]


class _NoRecord409(FakeRegistry):
    """A registry breaking PROTOCOL.md section 3: it revokes, then answers the unbind with a
    409 already_revoked that carries no record; ``reread`` says how the re-read goes."""

    reread = "up"

    def unbind(self, app_id: str, service_id: str, *, sign: Any) -> Any:
        from omictl.errors import RemoteRejected
        from omictl.transport.registry import AlreadyRevoked

        self.w.unbinds.append(sign().to_json())
        self.w.status[service_id] = "REVOKED"
        problem = RemoteRejected(
            "already revoked", status=409, problem_type="urn:omi:error:already_revoked"
        )
        raise AlreadyRevoked(problem, record=None)

    def get_binding(self, app_id: str, service_id: str) -> Any:
        from omictl.errors import RemoteUnavailable

        if self.reread == "down":
            raise RemoteUnavailable("binding lookup: connection refused (fake)")
        return super().get_binding(app_id, service_id)


def test_a_409_without_a_record_and_no_reread_is_not_revoked(
    world: FakeWorld, tmp_path: Path
) -> None:
    """Nothing signed and nothing re-read confirms the revocation: exit 8 (receipt held),
    not REVOKED/exit 0; the journal is not marked done, so a re-run asks again."""
    registry = _NoRecord409(world)
    registry.reread = "down"
    deps = make_deps(world, tmp_path, registry=registry, known_binding=world.binding(SERVICE))
    with pytest.raises(PartiallyDone) as info:
        decommission(Target(APP_ID, SERVICE), deps)
    assert "without the signed record" in info.value.message
    result = info.value.details["result"]
    assert (result["status"], result["exit_code"]) == ("PARTIAL", 8)
    assert result["receipt_id"] is not None
    assert result["steps"][-1]["step"] == "check_revoked"
    assert result["steps"][-1]["status"] == "failed"
    journal = JournalStore(tmp_path / "state").load(APP_ID, SERVICE)
    assert journal.phase == "unbind_sent" and journal.receipt is not None
    # the registry is back: the re-run confirms it, with no second DELETE
    registry.reread = "up"
    deletes = len(world.deletes)
    result2 = decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path, registry=registry))
    assert (result2.status, result2.exit_code, result2.already_revoked) == ("REVOKED", 0, True)
    assert len(world.deletes) == deletes


def test_a_409_without_a_record_confirmed_by_the_reread_is_revoked(
    world: FakeWorld, tmp_path: Path
) -> None:
    registry = _NoRecord409(world)
    deps = make_deps(world, tmp_path, registry=registry, known_binding=world.binding(SERVICE))
    result = decommission(Target(APP_ID, SERVICE), deps)
    assert (result.status, result.exit_code, result.already_revoked) == ("REVOKED", 0, True)
    assert result.revocation_record is None and result.bundle is None
    assert result.steps[-1]["status"] == "done"
    # confirmed: the journal is done, so a later run sends nothing at all
    assert JournalStore(tmp_path / "state").load(APP_ID, SERVICE).phase == "done"
    unbinds = len(world.unbinds)
    again = decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path, registry=registry))
    assert again.status == "REVOKED" and len(world.unbinds) == unbinds


def test_a_delete_without_an_answer_is_a_failed_step_that_says_how_to_resume(
    world: FakeWorld, tmp_path: Path
) -> None:
    """A DELETE that timed out may have been applied: the result's last step is the failed
    terminate, the hint says a re-run resumes, and the re-run sends the DELETE again (the
    provider answers it with the original receipt), never a new tenant wipe elsewhere."""
    from omictl.errors import RemoteUnavailable

    class Silent(FakeProvider):
        def terminate(self, endpoint_url: str, *, sign: Any) -> Any:
            super().terminate(endpoint_url, sign=sign)  # applied...
            raise RemoteUnavailable("termination request: read timed out (fake)")  # ...unheard

    with pytest.raises(RemoteUnavailable) as info:
        decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path, provider=Silent(world)))
    result = info.value.details["result"]
    assert (result["steps"][-1]["step"], result["steps"][-1]["status"]) == ("terminate", "failed")
    assert "may have reached the provider" in (info.value.hint or "")
    assert JournalStore(tmp_path / "state").load(APP_ID, SERVICE).phase == "termination_sent"
    again = decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path))
    assert (again.status, again.resumed_from) == ("REVOKED", "termination_sent")


def test_a_bundle_that_cannot_be_written_is_partial_and_the_rerun_writes_it(
    world: FakeWorld, tmp_path: Path
) -> None:
    """Revoked and verified, but the disk refuses the bundle: exit 8 (not 1, a bug), the
    record in the result, and a re-run writes the bundle without sending anything."""
    (tmp_path / "receipts").write_text("a file where the archive folder should be")
    with pytest.raises(PartiallyDone) as info:
        decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path))
    result = info.value.details["result"]
    assert (result["status"], result["exit_code"]) == ("PARTIAL", 8)
    assert result["revocation_record"] == world.records[SERVICE]
    assert (result["steps"][-1]["step"], result["steps"][-1]["status"]) == ("archive", "failed")
    assert "re-run" in (info.value.hint or "")
    (tmp_path / "receipts").unlink()
    sent = (len(world.deletes), len(world.unbinds))
    again = decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path))
    assert again.status == "REVOKED" and again.bundle is not None
    assert (len(world.deletes), len(world.unbinds)) == sent
    assert verify_bundle(json.loads(Path(again.bundle).read_text())).receipt_id


def test_a_signal_while_the_bundle_is_written_is_an_interrupt_not_a_disk_failure(
    world: FakeWorld, tmp_path: Path
) -> None:
    """SIGTERM arrives inside the archive step: the run stops as interrupted (the journal
    resumes it), never reported as 'free space or fix the permissions' (exit 8)."""
    from omictl.errors import SignalInterrupt

    class Stopping(Archive):
        def save_bundle(self, bundle: Any) -> Path:
            raise SignalInterrupt("SIGTERM")

    with pytest.raises(SignalInterrupt) as info:
        decommission(
            Target(APP_ID, SERVICE),
            make_deps(world, tmp_path, archive=Stopping(tmp_path / "receipts")),
        )
    partial = info.value.partial
    assert partial is not None and (partial["status"], partial["exit_code"]) == ("ABORTED", 130)
    assert partial["revocation_record"] == world.records[SERVICE]
    again = decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path))
    assert again.status == "REVOKED" and again.bundle is not None
    assert len(world.deletes) == 1


def _full_disk_at(monkeypatch: pytest.MonkeyPatch, *phases: str) -> type[JournalStore]:
    """A JournalStore whose appends of ``phases`` meet a full disk (ENOSPC from the write,
    through the store's own error handling)."""
    import errno

    import omictl.workflow.journal as journal_mod

    real_write_all = journal_mod.write_all

    class Full(JournalStore):
        def save(self, journal: Any, *, phase: str, **kw: Any) -> None:
            def full(fd: int, data: bytes) -> None:
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setattr(
                journal_mod, "write_all", full if phase in phases else real_write_all
            )
            try:
                super().save(journal, phase=phase, **kw)
            finally:
                monkeypatch.setattr(journal_mod, "write_all", real_write_all)

    return Full


@pytest.mark.parametrize(
    ("phase", "exit_code", "sent", "step", "resent"),
    [
        # nothing left the machine: a local problem (exit 2), not a bug (exit 1)
        ("termination_sent", 2, (0, 0), "terminate", (1, 1)),
        # the provider wiped, the receipt is not on disk: the re-run sends the DELETE again
        ("receipt_held", 8, (1, 0), "verify_receipt", (2, 1)),
        # the receipt is held, the unbind was not sent: the re-run reuses the receipt
        ("unbind_sent", 8, (1, 0), "unbind", (1, 1)),
        # revoked and verified, not recorded: the re-run asks for the record again
        ("revoked", 8, (1, 1), "verify_record", (1, 2)),
    ],
)
def test_a_full_disk_at_each_record_says_what_was_done_and_the_rerun_finishes(
    world: FakeWorld,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    phase: str,
    exit_code: int,
    sent: tuple[int, int],
    step: str,
    resent: tuple[int, int],
) -> None:
    from omictl.errors import OmictlError

    store = _full_disk_at(monkeypatch, phase)(tmp_path / "state")
    with pytest.raises(OmictlError) as info:
        decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path, journals=store))
    error = info.value
    assert int(error.exit_code) == exit_code
    assert "No space left on device" in error.message
    assert error.details["unrecorded"] == phase
    assert "free space or fix the permissions" in (error.hint or "")
    result = error.details["result"]
    assert (result["steps"][-1]["step"], result["steps"][-1]["status"]) == (step, "failed")
    assert (len(world.deletes), len(world.unbinds)) == sent
    if exit_code == 8:  # the receipt the provider signed is reported, not lost
        assert result["receipt"] == world.receipts[SERVICE]
    else:
        assert "nothing was sent" in (error.hint or "")
    first_receipt = world.receipts.get(SERVICE)

    again = decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path))
    assert again.status == "REVOKED" and again.bundle is not None
    assert (len(world.deletes), len(world.unbinds)) == resent
    if first_receipt is not None:  # the provider answers a repeated DELETE with its receipt
        assert again.receipt == first_receipt
    assert verify_bundle(json.loads(Path(again.bundle).read_text())).receipt_id


def test_a_full_disk_at_the_last_record_is_a_warning_of_a_finished_run(
    world: FakeWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Revoked and the evidence written: a journal that cannot record "done" (nor sync the
    record before it) does not turn that into a failure; it is a warning, and a re-run
    sends nothing."""
    import omictl.workflow.journal as journal_mod

    store = _full_disk_at(monkeypatch, "done")(tmp_path / "state")
    real_sync = journal_mod._fdatasync
    synced: list[int] = []

    def sync_once(fd: int) -> None:  # the unbind_sent record's sync works; later ones fail
        if len(synced) >= 2:
            raise OSError(28, "No space left on device")
        synced.append(fd)
        real_sync(fd)

    monkeypatch.setattr(journal_mod, "_fdatasync", sync_once)
    result = decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path, journals=store))
    monkeypatch.setattr(journal_mod, "_fdatasync", real_sync)
    assert result.status == "REVOKED" and result.bundle is not None
    warnings = [s for s in result.steps if s["status"] == "warning"]
    assert [w["step"] for w in warnings] == ["archive", "check_revoked"]
    assert all("the revocation stands" in w["message"] for w in warnings)
    sent = (len(world.deletes), len(world.unbinds))
    again = decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path))
    assert again.status == "REVOKED" and again.already_revoked
    assert (len(world.deletes), len(world.unbinds)) == sent


def test_a_rejected_receipt_on_a_full_disk_is_still_a_verification_failure(
    world: FakeWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A forged receipt while neither the archive nor the journal can be written: the
    error is the verification failure (exit 5), not the disk's, and says what was lost."""

    class Full(Archive):
        def save_rejected(self, **kw: Any) -> Path:
            from omictl.workflow.archive import ArchiveError

            raise ArchiveError("cannot write rejected/x.json: No space left on device")

    world.provider_mode = "forged"
    store = _full_disk_at(monkeypatch, "receipt_rejected")(tmp_path / "state")
    deps = make_deps(world, tmp_path, journals=store, archive=Full(tmp_path / "receipts"))
    with pytest.raises(VerificationError) as info:
        decommission(Target(APP_ID, SERVICE), deps)
    assert info.value.exit_code == ExitCode.VERIFICATION
    hint = info.value.hint or ""
    assert "could not be kept" in hint and "journal could not record it" in hint
    assert len(world.unbinds) == 0


def test_a_full_disk_never_claims_nothing_was_sent_after_an_earlier_send(
    world: FakeWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run 1's DELETE reached the provider (its receipt was refused); run 2 cannot record
    its own DELETE: the hint says an earlier request may have arrived, not "nothing was
    sent"."""
    from omictl.workflow.journal import JournalError

    world.provider_mode = "forged"
    with pytest.raises(VerificationError):
        decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path))
    world.provider_mode = "ok"
    store = _full_disk_at(monkeypatch, "termination_sent")(tmp_path / "state")
    with pytest.raises(JournalError) as info:
        decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path, journals=store))
    hint = info.value.hint or ""
    assert "nothing was sent" not in hint and "earlier try or run" in hint


def test_a_full_disk_while_asking_a_revoked_binding_for_its_record_is_partial(
    world: FakeWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run 1's unbind landed but its answer was lost; run 2 finds the binding REVOKED and
    cannot record asking again: PARTIAL (exit 8) that says the registry lists it REVOKED
    and names the one-service command (--all would not list it)."""
    from omictl.errors import RemoteUnavailable

    lost = _LosesTheAnswer(world, RemoteUnavailable("connection reset after the request (fake)"))
    with pytest.raises(PartiallyDone):
        decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path, registry=lost))
    assert world.status[SERVICE] == "REVOKED"
    store = _full_disk_at(monkeypatch, "unbind_sent")(tmp_path / "state")
    with pytest.raises(PartiallyDone) as info:
        decommission(Target(APP_ID, SERVICE), make_deps(world, tmp_path, journals=store))
    assert "lists" in info.value.message and "REVOKED" in info.value.message
    assert f"omictl decommission {APP_ID} {SERVICE}" in (info.value.hint or "")
