"""The injected clock drives freshness, nonce expiry and every timestamp the sandbox signs."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from omictl.core.envelope import Signer
from omictl.sandbox import Sandbox, start_sandbox
from tests.sandbox.helpers import (
    assert_rejected,
    send_delete,
    send_unbind,
    termination,
    unbind_request,
)

T0 = 1_705_412_600


class Clock:
    """A settable clock in integer Unix seconds."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> Clock:
    """A clock frozen at T0 until a test moves it."""
    return Clock()


@pytest.fixture
def timed(master: Signer, clock: Clock) -> Iterator[Sandbox]:
    """A sandbox on the test clock."""
    with start_sandbox(master_public_key=master.public_key, clock=clock) as sandbox:
        yield sandbox


def test_signed_times_come_from_the_clock(
    timed: Sandbox, clock: Clock, http: httpx.Client, master: Signer
) -> None:
    """terminated_at, revoked_at and the purge timestamps are the sandbox clock's."""
    sid = timed.service_ids[0]
    receipt = send_delete(http, timed, sid, termination(timed, sid, master, timestamp=T0)).json()
    clock.now = T0 + 5
    record = send_unbind(
        http, timed, sid, unbind_request(timed, sid, master, receipt, timestamp=T0)
    ).json()
    assert receipt["data"]["terminated_at"] == T0
    assert record["data"]["revoked_at"] == T0 + 5
    assert [p["envelope"]["data"]["timestamp"] for p in timed.purges()] == [T0 + 5, T0 + 5]


def test_request_stale_by_the_sandbox_clock(
    timed: Sandbox, clock: Clock, http: httpx.Client, master: Signer
) -> None:
    """Freshness is judged against the sandbox clock, not the wall clock."""
    sid = timed.service_ids[0]
    envelope = termination(timed, sid, master, timestamp=T0)
    clock.now = T0 + 301
    before = timed.snapshot()
    response = send_delete(http, timed, sid, envelope)
    assert_rejected(response, status=401, code="stale_request", sb=timed, before=before)


def test_nonce_is_forgotten_after_600_seconds(
    timed: Sandbox, clock: Clock, http: httpx.Client, master: Signer
) -> None:
    """A nonce accepted 600 s ago is still remembered; 601 s ago it may be used again."""
    a, b = timed.service_ids[:2]
    first = unbind_request(timed, a, master, timestamp=T0)
    assert send_unbind(http, timed, a, first).status_code == 200
    for now in (T0 + 599, T0 + 600):
        clock.now = now
        reuse = unbind_request(timed, b, master, timestamp=now, nonce=first["data"]["nonce"])
        assert send_unbind(http, timed, b, reuse).json()["type"] == "urn:omi:error:replayed_nonce"
    clock.now = T0 + 601
    reuse = unbind_request(timed, b, master, timestamp=clock.now, nonce=first["data"]["nonce"])
    assert send_unbind(http, timed, b, reuse).status_code == 200


def test_a_request_from_the_future_cannot_be_replayed_at_the_edge_of_the_window(
    timed: Sandbox, clock: Clock, http: httpx.Client, master: Signer
) -> None:
    """A request timestamped 300 s ahead, accepted at T0, is still fresh at T0 + 600: the
    same bytes sent again then are a replay, and one second later they are stale."""
    sid = timed.service_ids[0]
    envelope = termination(timed, sid, master, timestamp=T0 + 300)
    assert send_delete(http, timed, sid, envelope).status_code == 200
    clock.now = T0 + 600
    before = timed.snapshot()
    response = send_delete(http, timed, sid, envelope)
    assert_rejected(response, status=401, code="replayed_nonce", sb=timed, before=before)
    clock.now = T0 + 601
    response = send_delete(http, timed, sid, envelope)
    assert_rejected(response, status=401, code="stale_request", sb=timed, before=before)


@pytest.mark.parametrize("offset", [-300, 300], ids=["past", "future"])
def test_timestamp_exactly_300_s_off_is_fresh(
    offset: int, timed: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """The window is inclusive: 300 s either way is still fresh."""
    sid = timed.service_ids[0]
    envelope = unbind_request(timed, sid, master, timestamp=T0 + offset)
    assert send_unbind(http, timed, sid, envelope).status_code == 200


@pytest.mark.parametrize("offset", [-301, 301], ids=["past", "future"])
def test_timestamp_301_s_off_is_stale(
    offset: int, timed: Sandbox, http: httpx.Client, master: Signer
) -> None:
    """One second beyond the window either way is stale_request."""
    sid = timed.service_ids[0]
    before = timed.snapshot()
    envelope = unbind_request(timed, sid, master, timestamp=T0 + offset)
    response = send_unbind(http, timed, sid, envelope)
    assert_rejected(response, status=401, code="stale_request", sb=timed, before=before)
