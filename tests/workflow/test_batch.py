"""Batch decommission: plan files, worst exit code, isolation of failures."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from omictl.core.messages import Binding
from omictl.errors import ProtocolError, RemoteRejected, RemoteUnavailable, UsageError
from omictl.workflow.batch import load_plan, run_batch, worst_exit_code
from omictl.workflow.decommission import Result, Target
from tests.workflow.fakes import APP_ID, FakeRegistry, FakeWorld
from tests.workflow.test_decommission import make_deps


def test_plan_file_round_trip(tmp_path: Path) -> None:
    """A plan list becomes targets with defaults filled in."""
    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps(
            [
                {"app_id": APP_ID, "service_id": "a-1"},
                {
                    "app_id": APP_ID,
                    "service_id": "b-2",
                    "data_handling": "retain",
                    "skip_provider": True,
                },
            ]
        )
    )
    assert load_plan(plan) == [Target(APP_ID, "a-1"), Target(APP_ID, "b-2", "retain", True)]


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ([], "non-empty"),
        ({"x": 1}, "non-empty"),
        ([1], "entry 0 must be an object"),
        ([{"app_id": APP_ID}], "entry 0 needs"),
        ([{"app_id": "bad", "service_id": "a"}], "entry 0"),
        ([{"app_id": APP_ID, "service_id": "a", "extra": 1}], "unknown field"),
        ([{"app_id": APP_ID, "service_id": "a", "data_handling": "shred"}], "entry 0"),
        ([{"app_id": APP_ID, "service_id": "a"}, {"app_id": APP_ID, "service_id": "a"}], "repeats"),
    ],
)
def test_bad_plan_is_usage_error(tmp_path: Path, doc: object, fragment: str) -> None:
    """Each malformed plan is a usage error naming what is wrong."""
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(doc))
    with pytest.raises(UsageError) as info:
        load_plan(plan)
    assert fragment in info.value.message


def test_plan_not_json(tmp_path: Path) -> None:
    """A plan that is not JSON is a usage error."""
    plan = tmp_path / "plan.json"
    plan.write_text("{nope")
    with pytest.raises(UsageError):
        load_plan(plan)


def test_worst_exit_code_ranks_verification_over_partial() -> None:
    """Verification failures outrank partial and unavailable results; 0 when all pass."""
    assert worst_exit_code([0, 0]) == 0
    assert worst_exit_code([0, 8, 6]) == 6
    assert worst_exit_code([8, 5, 4]) == 5
    assert worst_exit_code([5, 1]) == 1
    assert worst_exit_code([]) == 0


def test_one_failure_does_not_stop_the_others(tmp_path: Path) -> None:
    """A service whose receipt is forged fails alone; the others are REVOKED."""
    world = FakeWorld()
    for sid in ("a-1", "b-2", "c-3"):
        world.add_service(sid)
    from tests.workflow.fakes import FakeProvider

    class Picky(FakeProvider):
        def terminate(self, endpoint_url, *, sign):  # type: ignore[no-untyped-def]
            self.w.provider_mode = "forged" if endpoint_url.endswith("b-2") else "ok"
            return super().terminate(endpoint_url, sign=sign)

    results = run_batch(
        [Target(APP_ID, s) for s in ("a-1", "b-2", "c-3")],
        lambda t: make_deps(world, tmp_path, provider=Picky(world)),
        concurrency=1,
    )
    assert [r.status for r in results] == ["REVOKED", "FAILED", "REVOKED"]
    assert [r.exit_code for r in results] == [0, 5, 0]
    assert results[1].error is not None and results[1].error["exit_code"] == 5
    assert world.status == {"a-1": "REVOKED", "b-2": "ACTIVE", "c-3": "REVOKED"}


# ---------------------------------------------------------------------------- the final re-read

SERVICES = ("a-1", "b-2", "c-3", "d-4")


class CountingRegistry(FakeRegistry):
    """A FakeRegistry that counts reads, and can lie or fail on the listing or lookups."""

    def __init__(
        self, world: FakeWorld, *, listing: str = "ok", stuck: str = "", lookup: str = "ok"
    ) -> None:
        super().__init__(world)
        self.listing, self.stuck, self.lookup = listing, stuck, lookup
        self.lists: list[bool] = []
        self.lookups: list[str] = []

    def _seen(self, binding: Binding) -> Binding:
        if binding.service_id == self.stuck:  # signs the revocation, keeps it listed
            return replace(binding, status="ACTIVE")
        return binding

    def list_services(self, app_id: str, *, active_only: bool = False) -> list[Binding]:
        self.lists.append(active_only)
        if self.listing == "down":
            raise RemoteUnavailable("registry unavailable (fake)")
        if self.listing == "refused":
            raise ProtocolError("service list: the answer is over the 1048576-byte limit")
        if self.listing == "bug":
            raise KeyError("a bug in the listing code")
        listed = [self._seen(b) for b in super().list_services(app_id)]
        return listed[:-1] if self.listing == "partial" else listed

    def get_binding(self, app_id: str, service_id: str) -> Binding:
        self.lookups.append(service_id)
        if self.lookup == "rejected" and service_id == "b-2":
            raise RemoteRejected(
                "binding lookup was rejected (HTTP 403)", status=403, problem_type=""
            )
        return self._seen(super().get_binding(app_id, service_id))


def run_four(
    tmp_path: Path,
    registry: CountingRegistry,
    world: FakeWorld,
    services: tuple[str, ...] = SERVICES,
    **deps: Any,
) -> list[Result]:
    """A batch over ``services`` at concurrency 2 (``deps`` go to every service's Deps)."""
    return run_batch(
        [Target(APP_ID, s) for s in services],
        # as with --all: the bindings come from the first listing, no lookup to resolve them
        lambda t: make_deps(
            world,
            tmp_path,
            registry=registry,
            known_binding=world.binding(t.service_id),
            **deps,
        ),
        concurrency=2,
    )


def final_step(result: Result) -> dict[str, Any]:
    step: dict[str, Any] = result.steps[-1]
    assert step["step"] == "check_revoked"
    return step


@pytest.fixture
def four() -> FakeWorld:
    world = FakeWorld()
    for sid in SERVICES:
        world.add_service(sid)
    return world


def test_batch_rereads_every_binding_with_one_listing(tmp_path: Path, four: FakeWorld) -> None:
    """N services: one listing confirms them all REVOKED, no lookup per service."""
    registry = CountingRegistry(four)
    results = run_four(tmp_path, registry, four)
    assert [r.status for r in results] == ["REVOKED"] * 4
    assert registry.lists == [False]  # the whole listing: REVOKED bindings are in it
    assert registry.lookups == []
    for result in results:
        assert final_step(result) == {
            "step": "check_revoked",
            "status": "done",
            "message": "binding is REVOKED (no longer discoverable, re-read in the app's listing)",
        }
        assert not result.check_pending


def test_batch_reread_catches_a_binding_still_listed(tmp_path: Path, four: FakeWorld) -> None:
    """A registry that signs a revocation but keeps listing the binding: that one exit 5."""
    registry = CountingRegistry(four, stuck="c-3")
    results = run_four(tmp_path, registry, four)
    assert [r.status for r in results] == ["REVOKED", "REVOKED", "FAILED", "REVOKED"]
    assert [r.exit_code for r in results] == [0, 0, 5, 0]
    assert worst_exit_code([r.exit_code for r in results]) == 5
    failed = results[2]
    assert failed.error is not None and "still lists it ACTIVE" in failed.error["message"]
    assert final_step(failed)["status"] == "failed"
    assert failed.bundle is not None  # the signed evidence is kept all the same


def test_batch_reread_with_the_registry_down_warns(tmp_path: Path, four: FakeWorld) -> None:
    """No answer to the listing: a warning per service, as one lookup would give."""
    registry = CountingRegistry(four, listing="down")
    results = run_four(tmp_path, registry, four)
    assert [(r.status, r.exit_code) for r in results] == [("REVOKED", 0)] * 4
    assert {final_step(r)["status"] for r in results} == {"warning"}
    assert registry.lookups == []


@pytest.mark.parametrize("listing", ["refused", "partial"])
def test_batch_reread_falls_back_to_lookups(tmp_path: Path, four: FakeWorld, listing: str) -> None:
    """An unusable listing (or one leaving a service out): those services are looked up."""
    registry = CountingRegistry(four, listing=listing, stuck="d-4")
    results = run_four(tmp_path, registry, four)
    expected = list(SERVICES) if listing == "refused" else ["d-4"]
    assert sorted(registry.lookups) == expected
    assert [r.exit_code for r in results] == [0, 0, 0, 5]
    assert final_step(results[0])["status"] == "done"


def test_one_service_rereads_its_own_binding(tmp_path: Path, four: FakeWorld) -> None:
    """A batch of one is not deferred: one lookup, no listing."""
    registry = CountingRegistry(four)
    results = run_batch(
        [Target(APP_ID, "a-1")],
        lambda t: make_deps(four, tmp_path, registry=registry, known_binding=four.binding("a-1")),
        concurrency=8,
    )
    assert results[0].status == "REVOKED"
    assert (registry.lists, registry.lookups) == ([], ["a-1"])
    assert final_step(results[0])["message"] == "binding is REVOKED (no longer discoverable)"


def test_batch_reread_lookup_rejected_keeps_that_exit_code(tmp_path: Path, four: FakeWorld) -> None:
    """A lookup refused by the registry (4xx) fails that service with exit 4."""
    registry = CountingRegistry(four, listing="refused", lookup="rejected")
    results = run_four(tmp_path, registry, four)
    assert [r.exit_code for r in results] == [0, 4, 0, 0]
    assert results[1].status == "FAILED"
    assert final_step(results[1])["status"] == "failed"
    assert results[1].revocation_record is not None  # the signed record is still reported


def test_batch_reread_listing_bug_falls_back_to_lookups(tmp_path: Path, four: FakeWorld) -> None:
    """An unexpected exception from the listing: each binding is looked up instead."""
    registry = CountingRegistry(four, listing="bug")
    results = run_four(tmp_path, registry, four)
    assert [(r.status, r.exit_code) for r in results] == [("REVOKED", 0)] * 4
    assert sorted(registry.lookups) == list(SERVICES)


def test_small_batches_reread_binding_by_binding(tmp_path: Path, four: FakeWorld) -> None:
    """Two services of an app: two lookups, no listing of the whole app."""
    registry = CountingRegistry(four)
    results = run_four(tmp_path, registry, four, ("a-1", "b-2"))
    assert [r.status for r in results] == ["REVOKED", "REVOKED"]
    assert registry.lists == []
    assert sorted(registry.lookups) == ["a-1", "b-2"]


def test_a_bug_in_reporting_the_reread_still_returns_every_result(
    tmp_path: Path, four: FakeWorld
) -> None:
    """Even an events callback that raises during the re-read loses no result."""
    registry = CountingRegistry(four)

    def events(event: Any) -> None:
        if event.step == "check_revoked":
            raise RuntimeError("a bug in the printer")

    results = run_four(tmp_path, registry, four, events=events)
    assert [(r.status, r.exit_code) for r in results] == [("FAILED", 1)] * 4
    assert all(r.error and r.error["code"] == "internal_error" for r in results)
    assert all(r.revocation_record is not None for r in results)


def test_a_reporting_bug_for_one_lookup_fails_that_service_alone(
    tmp_path: Path, four: FakeWorld
) -> None:
    """Binding-by-binding re-reads on a pool: a bug while reporting one service's step
    fails that service (exit 1) and leaves the other one REVOKED."""
    registry = CountingRegistry(four)

    def events(event: Any) -> None:
        if event.step == "check_revoked" and event.service_id == "a-1":
            raise RuntimeError("a bug in the printer")

    results = run_four(tmp_path, registry, four, ("a-1", "b-2"), events=events)
    assert [(r.service_id, r.status, r.exit_code) for r in results] == [
        ("a-1", "FAILED", 1),
        ("b-2", "REVOKED", 0),
    ]
    assert results[1].error is None
    assert [s["status"] for s in results[1].steps if s["step"] == "check_revoked"] == ["done"]


def test_a_reporting_bug_does_not_turn_exit_5_into_exit_1(tmp_path: Path, four: FakeWorld) -> None:
    """A binding still listed ACTIVE is exit 5 even when reporting that step fails."""
    registry = CountingRegistry(four, stuck="c-3")

    def events(event: Any) -> None:
        if event.step == "check_revoked" and event.status == "failed":
            raise RuntimeError("a bug in the printer")

    results = run_four(tmp_path, registry, four, events=events)
    assert [r.exit_code for r in results] == [0, 0, 5, 0]


def test_a_failing_progress_callback_neither_stops_nor_loses_the_batch(
    tmp_path: Path, four: FakeWorld
) -> None:
    """on_result prints progress; a closed stderr (BrokenPipeError) under it must not
    cancel the queued services or lose the results list."""
    seen: list[str] = []

    def on_result(result: Result) -> None:
        seen.append(result.service_id)
        raise BrokenPipeError(32, "Broken pipe")

    results = run_batch(
        [Target(APP_ID, s) for s in SERVICES],
        lambda t: make_deps(four, tmp_path, known_binding=four.binding(t.service_id)),
        concurrency=2,
        on_result=on_result,
    )
    assert [r.status for r in results] == ["REVOKED"] * len(SERVICES)
    assert sorted(seen) == sorted(SERVICES)
    assert all(four.status[s] == "REVOKED" for s in SERVICES)


def test_a_bug_after_the_archive_keeps_the_evidence_in_the_result(
    tmp_path: Path, four: FakeWorld
) -> None:
    """A non-omictl exception (a bug) after the bundle is written: that service is FAILED
    with exit 1, but its result still names the receipt, the record and the bundle."""
    victim = SERVICES[1]

    def events(event: Any) -> None:
        if event.service_id == victim and event.step == "archive" and event.status == "done":
            raise ValueError("a bug in a progress printer")

    results = run_batch(
        [Target(APP_ID, s) for s in SERVICES],
        lambda t: make_deps(
            four, tmp_path, known_binding=four.binding(t.service_id), events=events
        ),
        concurrency=2,
    )
    broken = results[1]
    assert (broken.status, broken.exit_code) == ("FAILED", 1)
    assert broken.error is not None and "ValueError" in broken.error["message"]
    assert broken.receipt_id == four.receipts[victim]["data"]["receipt_id"]
    assert broken.revocation_record is not None
    assert broken.bundle is not None and Path(broken.bundle).is_file()
    assert [r.status for i, r in enumerate(results) if i != 1] == ["REVOKED"] * 3


def test_a_stop_starts_nothing_more_and_reports_every_service(
    tmp_path: Path, four: FakeWorld
) -> None:
    """Ctrl-C or SIGTERM (the CLI sets ``stop``) during the first service: it finishes,
    nothing else starts (nothing sent to those), and every target has a result: ABORTED,
    exit 130, for those never started."""
    import threading

    from omictl.workflow.batch import INTERRUPTED_EXIT, BatchInterrupted

    stop = threading.Event()
    first = SERVICES[0]

    def events(event: Any) -> None:
        if event.service_id == first and event.step == "unbind" and event.status == "start":
            stop.set()  # the user presses Ctrl-C while the first service is in flight

    with pytest.raises(BatchInterrupted) as info:
        run_batch(
            [Target(APP_ID, s) for s in SERVICES],
            lambda t: make_deps(
                four, tmp_path, known_binding=four.binding(t.service_id), events=events
            ),
            concurrency=1,
            stop=stop,
        )
    results = info.value.results
    assert [r.service_id for r in results] == list(SERVICES)
    assert [r.status for r in results] == ["REVOKED", "ABORTED", "ABORTED", "ABORTED"]
    assert results[0].steps[-1]["status"] == "skipped"  # no re-read after a stop
    for r in results[1:]:
        assert r.exit_code == INTERRUPTED_EXIT and r.error is not None
        assert r.error["code"] == "interrupted"
        assert four.status[r.service_id] == "ACTIVE"
    assert [d["data"]["service_id"] for d in four.deletes] == [first]
    assert worst_exit_code([r.exit_code for r in results]) == INTERRUPTED_EXIT


def test_a_stop_after_the_last_service_changes_nothing(tmp_path: Path, four: FakeWorld) -> None:
    import threading

    stop = threading.Event()
    results = run_batch(
        [Target(APP_ID, s) for s in SERVICES],
        lambda t: make_deps(four, tmp_path, known_binding=four.binding(t.service_id)),
        concurrency=2,
        stop=stop,
    )
    stop.set()
    assert [r.status for r in results] == ["REVOKED"] * len(SERVICES)


def test_batch_409_without_a_record_needs_the_reread(tmp_path: Path, four: FakeWorld) -> None:
    """A 409 already_revoked without its signed record, and the listing down: that service
    is PARTIAL (exit 8, its receipt held), not REVOKED; the others keep their warning."""
    from omictl.errors import RemoteRejected
    from omictl.transport.registry import AlreadyRevoked

    class NoRecordFor(CountingRegistry):
        def unbind(self, app_id: str, service_id: str, *, sign: Any) -> Any:
            if service_id != "c-3":
                return super().unbind(app_id, service_id, sign=sign)
            sign()
            self.w.status[service_id] = "REVOKED"
            problem = RemoteRejected(
                "already revoked", status=409, problem_type="urn:omi:error:already_revoked"
            )
            raise AlreadyRevoked(problem, record=None)

    registry = NoRecordFor(four, listing="down")
    results = run_four(tmp_path, registry, four)
    assert [(r.status, r.exit_code) for r in results] == [
        ("REVOKED", 0),
        ("REVOKED", 0),
        ("PARTIAL", 8),
        ("REVOKED", 0),
    ]
    assert final_step(results[2])["status"] == "failed"
    assert (
        results[2].error is not None
        and "without the signed record" in (results[2].error["message"])
    )
    assert worst_exit_code([r.exit_code for r in results]) == 8


def test_an_interrupted_batch_does_not_report_an_unconfirmed_409_as_revoked(
    tmp_path: Path, four: FakeWorld
) -> None:
    """The 409 came without its record and the stop skips the re-read: PARTIAL (exit 8),
    not REVOKED; the service never started is ABORTED (130)."""
    import threading

    from omictl.errors import RemoteRejected
    from omictl.transport.registry import AlreadyRevoked
    from omictl.workflow.batch import BatchInterrupted

    class NoRecord(CountingRegistry):
        def unbind(self, app_id: str, service_id: str, *, sign: Any) -> Any:
            sign()
            self.w.status[service_id] = "REVOKED"
            problem = RemoteRejected(
                "already revoked", status=409, problem_type="urn:omi:error:already_revoked"
            )
            raise AlreadyRevoked(problem, record=None)

    registry = NoRecord(four)
    stop = threading.Event()
    with pytest.raises(BatchInterrupted) as info:
        run_batch(
            [Target(APP_ID, s) for s in ("a-1", "b-2")],
            lambda t: make_deps(
                four, tmp_path, registry=registry, known_binding=four.binding(t.service_id)
            ),
            concurrency=1,
            on_result=lambda result: stop.set(),  # Ctrl-C right after the first service
            stop=stop,
        )
    first, second = info.value.results
    assert (first.status, first.exit_code) == ("PARTIAL", 8)
    assert first.error is not None and "without the signed record" in first.error["message"]
    assert (second.status, second.exit_code) == ("ABORTED", 130)


def test_an_interrupted_skip_provider_409_without_record_is_an_interrupt(
    tmp_path: Path, four: FakeWorld
) -> None:
    """Without a receipt the unconfirmed service exits 130 (not 6), so a CI retry rule keyed
    on 130 fires; it is FAILED, since ABORTED means never started."""
    import threading

    from omictl.errors import RemoteRejected
    from omictl.transport.registry import AlreadyRevoked
    from omictl.workflow.batch import BatchInterrupted

    class NoRecord(CountingRegistry):
        def unbind(self, app_id: str, service_id: str, *, sign: Any) -> Any:
            sign()
            problem = RemoteRejected(
                "already revoked", status=409, problem_type="urn:omi:error:already_revoked"
            )
            raise AlreadyRevoked(problem, record=None)

    stop = threading.Event()
    with pytest.raises(BatchInterrupted) as info:
        run_batch(
            [Target(APP_ID, s, skip_provider=True) for s in ("a-1", "b-2")],
            lambda t: make_deps(
                four, tmp_path, registry=NoRecord(four), known_binding=four.binding(t.service_id)
            ),
            concurrency=1,
            on_result=lambda result: stop.set(),
            stop=stop,
        )
    first, second = info.value.results
    assert (first.status, first.exit_code) == ("FAILED", 130)  # started: not "ABORTED"
    assert (second.status, second.exit_code) == ("ABORTED", 130)  # never started
    assert first.error is not None and "without the signed record" in first.error["message"]


def test_a_signal_during_the_final_reread_is_still_reported(
    tmp_path: Path, four: FakeWorld
) -> None:
    """The re-read is not cut short, but the stop it saw is reported (exit 130 follows),
    not swallowed into a plain success."""
    import threading

    from omictl.workflow.batch import BatchInterrupted

    stop = threading.Event()

    class SignalledDuringListing(CountingRegistry):
        def list_services(self, app_id: str, *, active_only: bool = False) -> list[Binding]:
            stop.set()  # Ctrl-C while the listing is on its way
            return super().list_services(app_id, active_only=active_only)

    registry = SignalledDuringListing(four)
    with pytest.raises(BatchInterrupted) as info:
        run_batch(
            [Target(APP_ID, s) for s in SERVICES],
            lambda t: make_deps(
                four, tmp_path, registry=registry, known_binding=four.binding(t.service_id)
            ),
            concurrency=2,
            stop=stop,
        )
    assert [r.status for r in info.value.results] == ["REVOKED"] * 4
    assert all(final_step(r)["status"] == "done" for r in info.value.results)


@pytest.mark.parametrize(("errno_", "code"), [(13, 2), (36, 2), (5, 1)])
def test_a_path_the_environment_refuses_fails_that_service_with_exit_2(
    tmp_path: Path, errno_: int, code: int
) -> None:
    """An OSError about a path (EACCES, name too long) met inside one service is that
    service's usage error (exit 2, naming the path), as it is for a single decommission;
    EIO stays a bug (exit 1). The other services go on."""
    import os

    world = FakeWorld()
    for sid in ("a-1", "b-2"):
        world.add_service(sid)
    refused = str(tmp_path / "journals")

    def deps_for(target: Target) -> Any:
        if target.service_id == "b-2":
            raise OSError(errno_, os.strerror(errno_), refused)
        return make_deps(world, tmp_path)

    results = run_batch([Target(APP_ID, "a-1"), Target(APP_ID, "b-2")], deps_for, concurrency=1)
    assert [r.status for r in results] == ["REVOKED", "FAILED"]
    assert [r.exit_code for r in results] == [0, code]
    error = results[1].error
    assert error is not None and error["exit_code"] == code
    assert refused in error["message"]
    assert error["message"].startswith("cannot use" if code == 2 else "internal error")
