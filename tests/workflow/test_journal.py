"""The journal log: replay, deltas, torn records, format-1 files, the lock."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

import omictl.workflow.journal as journal_mod
from omictl.workflow.journal import InProgress, Journal, JournalError, JournalStore
from tests.security import helpers as h

APP, SVC = h.APP_ID, h.SERVICE_ID


@pytest.fixture
def store(tmp_path: Path) -> JournalStore:
    return JournalStore(tmp_path / "state")


def run_to_revoked(store: JournalStore) -> Journal:
    """Save the phases of a decommission up to ``revoked``, the way the workflow does."""
    with store.locked(APP, SVC):
        journal = store.load(APP, SVC)
        journal.termination_request = h.termination_request()
        store.save(journal, phase="termination_sent", now=h.NOW)
        journal.receipt = h.receipt()
        store.save(journal, phase="receipt_held", now=h.NOW + 1)
        journal.unbind_request = h.unbind_request()
        store.save(journal, phase="unbind_sent", now=h.NOW + 2)
        journal.revocation_record = h.revocation_record()
        store.save(journal, phase="revoked", now=h.NOW + 3, note="ok")
    return journal


def spy_opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """From now on (until ``monkeypatch.undo()``), the paths the journal module opens."""
    opened: list[str] = []
    real_open = os.open

    def spy_open(*args: Any, **kwargs: Any) -> int:
        opened.append(str(args[0]))
        return real_open(*args, **kwargs)

    monkeypatch.setattr(journal_mod.os, "open", spy_open)
    return opened


def lines(store: JournalStore) -> list[dict[str, Any]]:
    raw = store.path_for(APP, SVC).read_bytes()
    assert raw.endswith(b"\n")
    return [json.loads(line) for line in raw.splitlines()]


def test_replay_gives_back_every_field_and_the_history(store: JournalStore) -> None:
    written = run_to_revoked(store)
    loaded = store.load(APP, SVC)
    assert loaded == written  # dataclass equality: every field, phase and history
    assert loaded.phase == "revoked"
    assert loaded.receipt == h.receipt()
    assert loaded.revocation_record == h.revocation_record()
    assert [e["phase"] for e in loaded.history] == [
        "termination_sent",
        "receipt_held",
        "unbind_sent",
        "revoked",
    ]
    assert loaded.history[-1] == {"phase": "revoked", "at": h.NOW + 3, "note": "ok"}


def test_each_record_carries_only_what_changed(store: JournalStore) -> None:
    run_to_revoked(store)
    header, *records = lines(store)
    assert header == {
        "format": "omictl-journal",
        "format_version": 2,
        "app_id": APP,
        "service_id": SVC,
    }
    # the first holds the whole state, None fields left out (absent reads back as None,
    # and an older omictl can read a log that never needed a newer field)
    assert set(records[0]["set"]) == {"data_handling", "skip_provider", "termination_request"}
    assert [sorted(r["set"]) for r in records[1:]] == [
        ["receipt"],
        ["unbind_request"],
        ["revocation_record"],
    ]


def test_log_is_private_and_each_save_is_synced(
    store: JournalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real = journal_mod._fdatasync
    monkeypatch.setattr(journal_mod, "_fdatasync", lambda fd: (synced.append(fd), real(fd)))
    run_to_revoked(store)
    assert len(synced) == 4  # one per save, before save returns
    mode = store.path_for(APP, SVC).stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE(store.path_for(APP, SVC).parent.stat().st_mode) == 0o700


def test_a_torn_last_record_is_ignored_then_cut_off(store: JournalStore) -> None:
    """Cut the last record at every byte: the journal is the state before it, and the
    next save replaces the torn bytes (no garbage stays in the middle of the log)."""
    run_to_revoked(store)
    path = store.path_for(APP, SVC)
    full = path.read_bytes()
    last_start = full.rstrip(b"\n").rfind(b"\n") + 1
    for cut in range(last_start + 1, len(full)):
        path.write_bytes(full[:cut])
        journal = store.load(APP, SVC)
        assert journal.phase == "unbind_sent", cut
        assert journal.revocation_record is None
        journal.revocation_record = h.revocation_record()
        with store.locked(APP, SVC):
            store.save(journal, phase="revoked", now=h.NOW + 3, note="ok")
        assert path.read_bytes() == full, cut
        assert store.load(APP, SVC).phase == "revoked"


def test_a_zero_filled_tail_counts_as_torn(store: JournalStore) -> None:
    """A power cut can leave the appended length with zeroed data blocks."""
    run_to_revoked(store)
    path = store.path_for(APP, SVC)
    clean = path.read_bytes()
    with path.open("ab") as handle:
        handle.write(b"\x00" * 300 + b"\n")
    journal = store.load(APP, SVC)
    assert journal.phase == "revoked"
    store.save(journal, phase="done", now=h.NOW + 5)
    assert path.read_bytes().startswith(clean)  # the zeros were cut off, not kept
    assert b"\x00" not in path.read_bytes()
    assert lines(store)[-1]["phase"] == "done"
    kept = list(path.parent.glob(f"{path.name}.torn-{len(clean)}-*"))  # kept for inspection
    assert [p.read_bytes() for p in kept] == [b"\x00" * 300 + b"\n"]


def test_a_complete_last_line_that_is_not_json_is_refused(store: JournalStore) -> None:
    """Only an unfinished end counts as torn: a whole garbled last line is damage (a hand
    edit, a media error), and rolling back past it could repeat a DELETE."""
    run_to_revoked(store)
    path = store.path_for(APP, SVC)
    with path.open("ab") as handle:
        handle.write(b'{"at":1,"phase":"done","set":{}\n')  # no closing brace, but ended
    with pytest.raises(JournalError, match="line 6 is damaged"):
        store.load(APP, SVC)


def test_a_torn_first_write_is_a_fresh_journal(store: JournalStore) -> None:
    path = store.path_for(APP, SVC)
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"format":"omictl-jour')
    journal = store.load(APP, SVC)
    assert journal.phase == "new"
    journal.termination_request = h.termination_request()
    store.save(journal, phase="termination_sent", now=h.NOW)
    assert store.load(APP, SVC).termination_request == h.termination_request()
    assert lines(store)[0]["format"] == "omictl-journal"


def test_an_empty_log_left_by_the_lock_is_a_fresh_journal(store: JournalStore) -> None:
    with store.locked(APP, SVC):
        pass
    assert store.path_for(APP, SVC).read_bytes() == b""
    assert store.load(APP, SVC) == Journal(app_id=APP, service_id=SVC)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda ls: [ls[0], b"{not json", *ls[1:]], "line 2 is damaged"),
        (lambda ls: [b'{"format": "other"}', *ls[1:]], "is not an omictl journal"),
        (
            lambda ls: [ls[0].replace(b'"format_version":2', b'"format_version":3'), *ls[1:]],
            "journal version 3",
        ),
        (
            lambda ls: [ls[0].replace(APP.encode(), b"org.other.app"), *ls[1:]],
            "belongs to org.other.app",
        ),
        (lambda ls: [*ls, b'{"at":1,"phase":"gone","set":{}}'], "unknown phase"),
        (lambda ls: [*ls, b'{"at":1,"phase":"done","set":{"evil":1}}'], "unknown journal field"),
        (lambda ls: [*ls, b'{"at":1,"phase":"done","set":{"receipt":"x"}}'], "must be an object"),
        (lambda ls: [*ls, b'{"at":1,"phase":"done","set":{},"x":1}'], "not a journal record"),
        (lambda ls: [*ls, b'{"at":true,"phase":"done","set":{}}'], "unknown phase or time"),
    ],
)
def test_damage_before_the_last_line_is_refused(
    store: JournalStore, damage: Any, message: str
) -> None:
    run_to_revoked(store)
    path = store.path_for(APP, SVC)
    path.write_bytes(b"\n".join(damage(path.read_bytes().splitlines())) + b"\n")
    with pytest.raises(JournalError, match=message) as caught:
        store.load(APP, SVC)
    hint = caught.value.hint or ""
    assert "no DELETE was sent" in hint or "use the omictl that wrote it" in hint, hint


def test_a_format_1_journal_is_read_then_moved_to_the_log(store: JournalStore) -> None:
    legacy = store.legacy_path_for(APP, SVC)
    legacy.parent.mkdir(parents=True)
    legacy.write_text(json.dumps(h.journal()))
    journal = store.load(APP, SVC)
    assert journal.phase == "receipt_held"
    assert journal.receipt == h.receipt()
    with store.locked(APP, SVC):  # the lock creates the (empty) log: the legacy file rules
        journal = store.load(APP, SVC)
        assert journal.receipt == h.receipt()
        journal.unbind_request = h.unbind_request()
        store.save(journal, phase="unbind_sent", now=h.NOW + 5)
    stub = json.loads(legacy.read_text())  # an older omictl finds a version it refuses
    assert stub["format_version"] == 2 and stub["moved_to"] == f"{SVC}.journal"
    with pytest.raises(JournalError, match="unknown journal version"):
        Journal.from_json(stub, path=legacy)
    loaded = store.load(APP, SVC)
    assert loaded.receipt == h.receipt()
    assert loaded.termination_request == h.termination_request()
    assert loaded.unbind_request == h.unbind_request()
    assert [e["phase"] for e in loaded.history] == [
        "termination_sent",
        "receipt_held",
        "unbind_sent",
    ]


def test_a_cut_first_write_leaves_the_format_1_journal_in_charge(store: JournalStore) -> None:
    """The first write (header + full state) cut at any byte: the format-1 file still
    rules, so the held receipt is never forgotten (no second DELETE)."""
    legacy = store.legacy_path_for(APP, SVC)
    legacy.parent.mkdir(parents=True)
    legacy.write_text(json.dumps(h.journal()))
    journal = store.load(APP, SVC)
    journal.unbind_request = h.unbind_request()
    store.save(journal, phase="unbind_sent", now=h.NOW + 5)
    path = store.path_for(APP, SVC)
    full = path.read_bytes()
    legacy.write_text(json.dumps(h.journal()))  # as it was before the migration
    for cut in range(len(full)):
        path.write_bytes(full[:cut])
        loaded = store.load(APP, SVC)
        assert (loaded.phase, loaded.receipt) == ("receipt_held", h.receipt()), cut


def test_a_stub_without_its_log_is_refused(store: JournalStore) -> None:
    """After a migration the log holds everything: if it goes missing, say so."""
    legacy = store.legacy_path_for(APP, SVC)
    legacy.parent.mkdir(parents=True)
    legacy.write_text(json.dumps(h.journal()))
    journal = store.load(APP, SVC)
    store.save(journal, phase="unbind_sent", now=h.NOW + 5)
    store.path_for(APP, SVC).unlink()
    with pytest.raises(JournalError, match=r"moved to .*missing or empty"):
        store.load(APP, SVC)


def test_a_symlink_in_place_of_the_log_is_not_followed(store: JournalStore, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"")
    path = store.path_for(APP, SVC)
    path.parent.mkdir(parents=True)
    path.symlink_to(elsewhere)
    with pytest.raises(JournalError, match="cannot open journal"), store.locked(APP, SVC):
        pass
    assert elsewhere.read_bytes() == b""


def test_a_write_failure_is_a_journal_error_and_changes_nothing(
    store: JournalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = run_to_revoked(store)

    def full(_fd: int) -> None:
        raise OSError(28, "No space left on device")

    before = store.path_for(APP, SVC).read_bytes()
    monkeypatch.setattr(journal_mod, "_fdatasync", full)
    with pytest.raises(JournalError, match="No space left on device"):
        store.save(written, phase="done", now=h.NOW + 9)
    assert written.phase == "revoked"  # the in-memory journal did not move on either
    assert store.path_for(APP, SVC).read_bytes() == before  # the unsynced record is gone


def test_a_second_holder_waits_then_gets_in_progress(store: JournalStore) -> None:
    entered = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with store.locked(APP, SVC):
            entered.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert entered.wait(5)
        other = JournalStore(store.state_dir)  # another run: its own descriptor
        with (
            pytest.raises(InProgress, match="another omictl run"),
            other.locked(APP, SVC, wait=0.2, poll=0.05),
        ):
            pass
    finally:
        release.set()
        holder.join()
    with JournalStore(store.state_dir).locked(APP, SVC, wait=0.2) as waited:
        assert waited is False


def test_saves_under_the_lock_use_the_held_descriptor(
    store: JournalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No open() per step while the run holds the lock (one descriptor per service)."""
    with store.locked(APP, SVC):
        journal = store.load(APP, SVC)
        opened = spy_opens(monkeypatch)
        store.save(journal, phase="termination_sent", now=h.NOW)
        store.save(journal, phase="receipt_held", now=h.NOW)
        monkeypatch.undo()
    assert [p for p in opened if p.endswith(".journal")] == []


def test_a_half_written_record_is_removed_and_the_next_save_goes_on(
    store: JournalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write cut short (disk full) leaves no half record before later ones."""
    written = run_to_revoked(store)
    before = store.path_for(APP, SVC).read_bytes()
    real_write = os.write
    calls = [0]

    def short_then_full(fd: int, data: Any) -> int:
        calls[0] += 1
        if calls[0] == 1:
            return real_write(fd, bytes(data[:10]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(journal_mod.os, "write", short_then_full)
    with pytest.raises(JournalError, match="No space left"):
        store.save(written, phase="done", now=h.NOW + 9)
    monkeypatch.undo()
    assert store.path_for(APP, SVC).read_bytes() == before
    written.bundle_path = "/b.json"
    store.save(written, phase="done", now=h.NOW + 10)
    loaded = store.load(APP, SVC)
    assert (loaded.phase, loaded.bundle_path) == ("done", "/b.json")


def test_a_field_changed_in_place_is_still_recorded(store: JournalStore) -> None:
    """What was written is compared with a private copy, never with the live object."""
    journal = run_to_revoked(store)
    assert journal.revocation_record is not None
    journal.revocation_record["data"]["note"] = "changed in place"
    store.save(journal, phase="done", now=h.NOW + 4)
    loaded = store.load(APP, SVC)
    assert loaded.revocation_record is not None
    assert loaded.revocation_record["data"]["note"] == "changed in place"
    assert sorted(lines(store)[-1]["set"]) == ["revocation_record"]


def test_an_interrupt_between_writes_leaves_no_half_record(
    store: JournalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C after part of a record went out: cut back, and no torn copy next time."""
    written = run_to_revoked(store)
    path = store.path_for(APP, SVC)
    before = path.read_bytes()
    real_write = os.write

    def part_then_interrupt(fd: int, data: Any) -> int:
        real_write(fd, bytes(data[:10]))
        raise KeyboardInterrupt

    monkeypatch.setattr(journal_mod.os, "write", part_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        store.save(written, phase="done", now=h.NOW + 9)
    monkeypatch.undo()
    assert path.read_bytes() == before
    store.save(written, phase="done", now=h.NOW + 10)
    assert store.load(APP, SVC).phase == "done"
    assert list(path.parent.glob("*.torn-*")) == []  # nothing was torn on disk


def test_unbind_tries_do_not_repeat_the_receipt(store: JournalStore) -> None:
    """Each try of an unbind embeds the receipt; the log refers to it instead."""
    big = h.receipt()
    big["data"] = {**big["data"], "padding": "x" * 200_000}  # journals do not verify
    with store.locked(APP, SVC):
        journal = store.load(APP, SVC)
        journal.receipt = big
        store.save(journal, phase="receipt_held", now=h.NOW)
        for attempt in range(4):
            request = h.unbind_request()
            request["data"] = {**request["data"], "provider_receipt": big, "try": attempt}
            journal.unbind_request = request
            store.save(journal, phase="unbind_sent", now=h.NOW + attempt)
    size = store.path_for(APP, SVC).stat().st_size
    assert 200_000 < size < 215_000  # the receipt once, not five times
    loaded = store.load(APP, SVC)
    assert loaded.unbind_request == request  # the receipt is put back, exactly
    assert loaded.unbind_request["data"]["provider_receipt"] == big
    assert '"journal_ref":"receipt"' in store.path_for(APP, SVC).read_text()


def test_a_receipt_reference_without_a_receipt_is_refused(store: JournalStore) -> None:
    run_to_revoked(store)
    path = store.path_for(APP, SVC)
    header = path.read_bytes().splitlines()[0]
    ref = {"unbind_request": {"data": {"provider_receipt": {"journal_ref": "receipt"}}}}
    record = json.dumps({"at": 1, "phase": "unbind_sent", "set": ref}).encode()
    path.write_bytes(header + b"\n" + record + b"\n")
    with pytest.raises(JournalError, match="refers to a receipt the journal does not hold"):
        store.load(APP, SVC)


def test_a_failed_stub_write_keeps_the_format_1_file(
    store: JournalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No stub (disk full): the format-1 file stays as it was, never removed."""
    from omictl.errors import OmictlError

    legacy = store.legacy_path_for(APP, SVC)
    legacy.parent.mkdir(parents=True)
    legacy.write_text(json.dumps(h.journal()))
    original = legacy.read_bytes()

    def full(*_args: Any, **_kwargs: Any) -> None:
        raise OmictlError("cannot write: No space left on device")

    monkeypatch.setattr(journal_mod, "atomic_write_json", full)
    journal = store.load(APP, SVC)
    store.save(journal, phase="unbind_sent", now=h.NOW + 5)
    assert legacy.read_bytes() == original
    assert store.load(APP, SVC).phase == "unbind_sent"  # the log rules from now on


def test_an_unsynced_record_is_on_file_and_the_next_save_syncs_both(
    store: JournalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sync=False writes the record (a crash of the process keeps it) without fdatasync;
    the next synced save's one fdatasync covers it."""
    synced: list[int] = []
    real = journal_mod._fdatasync
    monkeypatch.setattr(journal_mod, "_fdatasync", lambda fd: (synced.append(fd), real(fd)))
    with store.locked(APP, SVC):
        journal = store.load(APP, SVC)
        journal.termination_request = h.termination_request()
        store.save(journal, phase="termination_sent", now=h.NOW)
        assert len(synced) == 1 and not journal.unsynced
        journal.receipt = h.receipt()
        store.save(journal, phase="receipt_held", now=h.NOW + 1, sync=False)
        assert len(synced) == 1 and journal.unsynced
        assert [r.get("phase") for r in lines(store)][-1] == "receipt_held"
        journal.unbind_request = h.unbind_request()
        store.save(journal, phase="unbind_sent", now=h.NOW + 2)
        assert len(synced) == 2 and not journal.unsynced
    again = store.load(APP, SVC)
    assert again.phase == "unbind_sent" and again.receipt == h.receipt()


def test_flush_syncs_only_a_journal_with_a_waiting_record(
    store: JournalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real = journal_mod._fdatasync
    monkeypatch.setattr(journal_mod, "_fdatasync", lambda fd: (synced.append(fd), real(fd)))
    journal = run_to_revoked(store)
    synced.clear()
    store.flush(journal)  # everything is synced already: nothing to do
    assert synced == []
    journal.bundle_path = "/somewhere/bundle.json"
    store.save(journal, phase="done", now=h.NOW + 4, sync=False)  # outside the lock
    assert synced == [] and journal.unsynced
    store.flush(journal)  # opens the log itself: the lock is not held
    assert len(synced) == 1 and not journal.unsynced
    store.flush(journal)
    assert len(synced) == 1
    assert store.load(APP, SVC).phase == "done"


def test_load_under_the_lock_reads_through_the_held_descriptor(
    store: JournalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No second open of the log to read it while the run holds its lock; same journal."""
    run_to_revoked(store)
    outside = store.load(APP, SVC)
    with store.locked(APP, SVC):
        opened = spy_opens(monkeypatch)
        inside = store.load(APP, SVC)
        monkeypatch.undo()
    assert [p for p in opened if p.endswith(".journal")] == []
    assert inside.fields() == outside.fields()
    assert inside.history == outside.history
    assert (inside.disk_end, inside.disk_size) == (outside.disk_end, outside.disk_size)


def test_an_oversized_log_is_refused_under_the_lock_too(
    store: JournalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_to_revoked(store)
    size = store.path_for(APP, SVC).stat().st_size
    monkeypatch.setattr(journal_mod, "MAX_JOURNAL_BYTES", size - 1)
    with store.locked(APP, SVC), pytest.raises(JournalError, match="larger than"):
        store.load(APP, SVC)
    with pytest.raises(JournalError, match="larger than"):
        store.load(APP, SVC)


def test_nul_bytes_in_a_record_that_shared_an_fdatasync_end_the_log_there(
    store: JournalStore,
) -> None:
    """receipt_held and unbind_sent share one fdatasync: a power cut during it can persist
    the later block and not the earlier one. Both records are then a torn end (the unbind
    never left: it waits for that fdatasync), and a re-run resumes from termination_sent."""
    run_to_revoked(store)
    path = store.path_for(APP, SVC)
    raw = path.read_bytes().splitlines(keepends=True)
    header_and_first = b"".join(raw[:2])  # header + termination_sent
    torn = b"\x00" * (len(raw[2]) - 1) + b"\n" + raw[3]  # receipt_held lost, unbind_sent not
    path.write_bytes(header_and_first + torn)
    journal = store.load(APP, SVC)
    assert journal.phase == "termination_sent"
    assert journal.receipt is None and journal.unbind_request is None
    journal.receipt = h.receipt()
    store.save(journal, phase="receipt_held", now=h.NOW + 9)
    assert path.read_bytes().startswith(header_and_first)
    assert [r.get("phase") for r in lines(store)][-1] == "receipt_held"
    kept = list(path.parent.glob(f"{path.name}.torn-{len(header_and_first)}-*"))
    assert [p.read_bytes() for p in kept] == [torn]


def test_flush_never_recreates_a_log_that_vanished(store: JournalStore) -> None:
    journal = run_to_revoked(store)
    store.save(journal, phase="done", now=h.NOW + 4, sync=False)
    store.path_for(APP, SVC).unlink()
    with pytest.raises(JournalError, match="cannot write"):
        store.flush(journal)
    assert not store.path_for(APP, SVC).exists()
