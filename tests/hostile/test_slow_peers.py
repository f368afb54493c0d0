"""Slow and silent peers: omictl gives up within its deadline, whatever the trickle.

With ``--timeout 1`` a call's deadline is 6 s (DEADLINE_FACTOR x the read timeout, tries
and waits included). The bound asserted is a generous 15 s so the tests never flake; the
measured figures are printed (``pytest -s``) and recorded in docs/security.md.
"""

from __future__ import annotations

import pytest

from tests.hostile.conftest import Hostile
from tests.hostile.peer import Reply

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BOUND_S = 15.0
#: A body that would take 150 s at 2 bytes per second: far past any bound asserted here.
SLOW_BODY = {"pad": "x" * 300}


def _report(name: str, seconds: float) -> None:
    print(f"\n[measured] {name}: gave up after {seconds:.2f} s")


def test_provider_body_trickle_gives_up(hostile: Hostile) -> None:
    """Headers at once, then the receipt body 1 byte / 0.5 s: exit 6 within the bound."""
    hostile.fake.overrides["delete"] = lambda _r: Reply(body=SLOW_BODY, body_pace=0.5)
    res = hostile.decommission("--timeout", "1")
    _report("provider body trickle", res.seconds)
    assert res.code == 6, res.err
    assert res.json()["error"]["code"] == "deadline_exceeded"
    assert res.seconds < BOUND_S
    assert hostile.fake.deletes() == 1
    assert hostile.fake.unbinds() == 0


def test_provider_header_trickle_gives_up(hostile: Hostile) -> None:
    """The status line and headers themselves 1 byte / 0.5 s: exit 6 within the bound."""
    hostile.fake.overrides["delete"] = lambda _r: Reply(body=SLOW_BODY, head_pace=0.5)
    res = hostile.decommission("--timeout", "1")
    _report("provider header trickle", res.seconds)
    assert res.code == 6, res.err
    assert res.json()["error"]["code"] == "deadline_exceeded"
    assert res.seconds < BOUND_S
    assert hostile.fake.deletes() == 1
    assert hostile.fake.unbinds() == 0


def test_registry_header_trickle_gives_up_before_any_delete(hostile: Hostile) -> None:
    """A registry trickling its key's headers: exit 6 within the bound, no DELETE sent."""
    hostile.fake.overrides["info"] = lambda _r: Reply(body=SLOW_BODY, head_pace=0.5)
    res = hostile.decommission("--timeout", "1")
    _report("registry header trickle", res.seconds)
    assert res.code == 6, res.err
    assert res.seconds < BOUND_S
    assert hostile.fake.deletes() == 0
    assert not (hostile.home / "known_registries.json").exists()


def test_registry_unbind_body_trickle_is_partial(hostile: Hostile) -> None:
    """An unbind answer trickled after the wipe: exit 8 (re-run resumes) within the bound."""
    hostile.fake.overrides["unbind"] = lambda _r: Reply(body=SLOW_BODY, body_pace=0.5)
    res = hostile.decommission("--timeout", "1")
    _report("registry unbind body trickle", res.seconds)
    assert res.code == 8, res.err
    assert res.json()["error"]["details"]["cause"]["code"] == "deadline_exceeded"
    assert res.seconds < BOUND_S
    assert hostile.fake.deletes() == 1


def test_silent_provider_gives_up(hostile: Hostile) -> None:
    """A provider that accepts the connection and never answers: exit 6 within the bound."""
    hostile.fake.overrides["delete"] = lambda _r: Reply(raw=b"", hold=30.0)
    res = hostile.decommission("--timeout", "1")
    _report("silent provider", res.seconds)
    assert res.code == 6, res.err
    assert res.seconds < BOUND_S
    assert hostile.fake.unbinds() == 0
