"""Batch decommission: plan files, worst exit code, isolation of failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from omictl.errors import UsageError
from omictl.workflow.batch import load_plan, run_batch, worst_exit_code
from omictl.workflow.decommission import Target
from tests.workflow.fakes import APP_ID, FakeWorld
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
