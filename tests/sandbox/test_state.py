"""State in SQLite: a restart on the same file keeps everything; start-up refuses bad input."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import httpx
import pytest

from omictl.core.envelope import Signer
from omictl.core.messages import verify_revocation_record
from omictl.errors import UsageError
from omictl.sandbox import start_sandbox
from tests.sandbox.helpers import (
    assert_rejected,
    receipt_for,
    send_delete,
    send_unbind,
    termination,
    unbind_request,
)


def test_restart_between_delete_and_unbind_completes(
    tmp_path: Path, http: httpx.Client, master: Signer
) -> None:
    """A receipt obtained before a restart is accepted after it, under the same registry key."""
    state = tmp_path / "sandbox.db"
    with start_sandbox(master_public_key=master.public_key, state=state) as sb:
        sid = sb.service_ids[0]
        receipt = receipt_for(http, sb, sid, master)
        before = (sb.app_id, sb.service_ids, sb.registry_public_key, sb.service(sid).public_key)
    with start_sandbox(master_public_key=master.public_key, state=state) as sb:
        after = (sb.app_id, sb.service_ids, sb.registry_public_key, sb.service(sid).public_key)
        assert after == before
        response = send_unbind(http, sb, sid, unbind_request(sb, sid, master, receipt))
        assert response.status_code == 200
        record = verify_revocation_record(
            response.json(), registry_public_key=before[2], app_id=sb.app_id, service_id=sid
        )
        assert record.receipt_id == receipt["data"]["receipt_id"]
        assert sb.binding_status(sid) == "REVOKED"


def test_repeated_delete_after_restart_returns_original(
    tmp_path: Path, http: httpx.Client, master: Signer
) -> None:
    """The original receipt survives a restart, byte for byte."""
    state = tmp_path / "sandbox.db"
    with start_sandbox(master_public_key=master.public_key, state=state) as sb:
        sid = sb.service_ids[0]
        first = send_delete(http, sb, sid, termination(sb, sid, master)).content
    with start_sandbox(master_public_key=master.public_key, state=state) as sb:
        assert send_delete(http, sb, sid, termination(sb, sid, master)).content == first


def test_nonces_survive_a_restart(tmp_path: Path, http: httpx.Client, master: Signer) -> None:
    """A DELETE accepted before a restart is still a replay after it."""
    state = tmp_path / "sandbox.db"
    with start_sandbox(master_public_key=master.public_key, state=state) as sb:
        sid = sb.service_ids[0]
        envelope = termination(sb, sid, master)
        assert send_delete(http, sb, sid, envelope).status_code == 200
    with start_sandbox(master_public_key=master.public_key, state=state) as sb:
        before = sb.snapshot()
        response = send_delete(http, sb, sid, envelope)
        assert_rejected(response, status=401, code="replayed_nonce", sb=sb, before=before)


def test_revocation_survives_a_restart(tmp_path: Path, http: httpx.Client, master: Signer) -> None:
    """A revoked binding is still REVOKED, with its record, after a restart."""
    state = tmp_path / "sandbox.db"
    with start_sandbox(master_public_key=master.public_key, state=state) as sb:
        sid = sb.service_ids[0]
        record = send_unbind(http, sb, sid, unbind_request(sb, sid, master)).json()
    with start_sandbox(master_public_key=master.public_key, state=state) as sb:
        response = send_unbind(http, sb, sid, unbind_request(sb, sid, master))
        assert response.status_code == 409
        assert response.json()["record"] == record
        assert len(sb.purges()) == 2


def test_restart_with_more_services_keeps_the_first(tmp_path: Path, master: Signer) -> None:
    """services=5 on a state with 3 adds two and keeps the three."""
    state = tmp_path / "sandbox.db"
    with start_sandbox(master_public_key=master.public_key, state=state) as sb:
        first = sb.service_ids
    with start_sandbox(master_public_key=master.public_key, state=state, services=5) as sb:
        assert sb.service_ids == [*first, "analytics-events-4", "mail-relay-5"]


def test_reset_starts_over(tmp_path: Path, master: Signer) -> None:
    """reset=True deletes the state: a new registry key and fresh service keys."""
    state = tmp_path / "sandbox.db"
    with start_sandbox(master_public_key=master.public_key, state=state) as sb:
        old = (sb.registry_public_key, sb.service(sb.service_ids[0]).public_key)
    with start_sandbox(master_public_key=master.public_key, state=state, reset=True) as sb:
        new = (sb.registry_public_key, sb.service(sb.service_ids[0]).public_key)
        assert sb.service_ids == ["cms-article-1", "storage-blob-2", "search-index-3"]
    assert old[0] != new[0]
    assert old[1] != new[1]


def test_state_file_is_private(tmp_path: Path, master: Signer) -> None:
    """The state file (it holds the sandbox's private keys) is created 0600."""
    state = tmp_path / "sandbox.db"
    with start_sandbox(master_public_key=master.public_key, state=state):
        pass
    assert stat.S_IMODE(state.stat().st_mode) == 0o600


def test_in_memory_state_by_default(master: Signer) -> None:
    """Without state= nothing is written to disk."""
    with start_sandbox(master_public_key=master.public_key) as sb:
        assert sb.state_path is None


def test_same_app_id_with_other_master_key_is_refused(tmp_path: Path, master: Signer) -> None:
    """An explicit app_id on file under another master key is a usage error."""
    state = tmp_path / "sandbox.db"
    app_id = "org.omiappreg.team.shop.abcdef"
    with start_sandbox(master_public_key=master.public_key, state=state, app_id=app_id):
        pass
    with pytest.raises(UsageError, match="already has app"):
        start_sandbox(
            master_public_key=Signer(os.urandom(32)).public_key, state=state, app_id=app_id
        )


def test_not_a_database_is_refused(tmp_path: Path, master: Signer) -> None:
    """A state file that is not SQLite is a usage error naming the file."""
    state = tmp_path / "notes.txt"
    state.write_bytes(b"these are not the bytes you are looking for" * 100)
    with pytest.raises(UsageError, match="not a usable sandbox state file"):
        start_sandbox(master_public_key=master.public_key, state=state)


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "example.org", "::"])
def test_non_loopback_host_is_refused(host: str, master: Signer) -> None:
    """The sandbox listens on loopback only unless explicitly allowed."""
    with pytest.raises(UsageError):
        start_sandbox(master_public_key=master.public_key, host=host)


def test_invalid_app_id_is_refused(master: Signer) -> None:
    """An explicit app_id must be a valid RDAID."""
    with pytest.raises(UsageError):
        start_sandbox(master_public_key=master.public_key, app_id="Not.An.App")


def test_busy_port_is_a_usage_error(master: Signer) -> None:
    """A port already bound is reported with a hint, not a traceback."""
    with (
        start_sandbox(master_public_key=master.public_key) as sb,
        pytest.raises(UsageError, match="cannot listen") as info,
    ):
        start_sandbox(master_public_key=master.public_key, port=sb.port)
    assert info.value.hint == "pick another --port (0 picks a free one)"


def test_second_app_gets_its_own_services(http: httpx.Client, master: Signer) -> None:
    """add_app registers another master key with its own bindings and provider tenants."""
    other = Signer(os.urandom(32))
    with start_sandbox(master_public_key=master.public_key) as sb:
        other_app = sb.add_app(other.public_key, services=2)
        services = sb.services(other_app)
        assert [s.service_id for s in services] == ["analytics-events-4", "mail-relay-5"]
        listed = http.get(f"{sb.registry_url}/v1/apps/{other_app}/services").json()
        assert [b["service_id"] for b in listed["services"]] == [
            "analytics-events-4",
            "mail-relay-5",
        ]
        extra = sb.add_service(service_type="Queue")
        assert (extra.service_id, extra.service_type) == ("queue-6", "Queue")
        assert sb.service_ids[-1] == "queue-6"
