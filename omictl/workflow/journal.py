"""The per-service journal: what a decommission has done so far, so a re-run resumes.

One append-only log per (app, service): ``<home>/state/<app_id>/<service_id>.journal``,
JSON Lines. The first line is a header (format, version, ids); every later line is one
step's record, ``{"phase", "at", "note"?, "set": {changed fields}}``, appended
(:meth:`JournalStore.save`) and ``fdatasync``-ed before the request it announces leaves
and before the run ends (a record may share the next one's fdatasync,
``save(sync=False)``). Replaying the lines gives the journal. A write cut short by a crash
or power loss can only leave an unfinished end: bytes after the last newline, or a line
with NUL bytes (the new length persisted before the data) and whatever follows it. That is
ignored on reading (the journal is then what it was before that write) and cut off before
the next append, a copy kept as ``<name>.torn-<offset>-<ns>``. Damage anywhere else is
refused, never guessed at.

Appending keeps the guarantee of the former whole-file rewrites (each record is on disk
before the step it announces, and a reader sees the old or the new state, never a mix)
at a fraction of the cost: no temporary file, rename or folder fsync per step, and only
what changed is encoded (docs/performance.md). Journals written by omictl before the log
(``<service_id>.json``, format version 1) are still read, and moved to the log on the
next write; the old file is then replaced by a stub (``format_version`` 2, ``moved_to``)
that an older omictl refuses to run on, instead of starting that service over.

The log file is also the lock: :meth:`JournalStore.locked` holds an exclusive ``flock`` on
it for the whole run, so two runs on the same service never interleave (the second
waits, then resumes from what the first recorded).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omictl.core.envelope import parse_json
from omictl.errors import ExitCode, OmictlError, UsageError, compact_json_text
from omictl.fsutil import (
    PRIVATE_FILE_MODE,
    atomic_write_bytes,
    atomic_write_json,
    ensure_private_dir,
    fsync_dir,
    read_capped,
    write_all,
)

JOURNAL_FORMAT = "omictl-journal"
JOURNAL_VERSION = 2
LEGACY_VERSION = 1
JOURNAL_SUFFIX = ".journal"
LEGACY_SUFFIX = ".json"
MAX_JOURNAL_BYTES = 8 * 1024 * 1024

#: Phases in the order a decommission passes through them.
PHASES = (
    "new",
    "termination_sent",  # a DELETE may have reached the provider
    "receipt_held",  # a verified termination receipt is held: never DELETE again
    "receipt_rejected",  # the provider's answer failed verification; kept for inspection
    "unbind_sent",  # an unbind may have reached the registry
    "revoked",  # a verified revocation record is held
    "done",  # evidence bundle archived
)

#: The journal's fields a record may set, with the JSON types each accepts.
_OBJECT_FIELDS = (
    "termination_request",
    "receipt",
    "rejected_receipt",
    "unbind_request",
    "revocation_record",
    "rejected_record",
)
_TEXT_FIELDS = ("data_handling", "rejection_reason", "bundle_path")
FIELDS = ("data_handling", "skip_provider", *_OBJECT_FIELDS, "rejection_reason", "bundle_path")
#: ``rejected_record``: a revocation record the registry answered our unbind with that did
#: not name our receipt (refused, exit 5); should it come back later (in a 409), it is
#: refused again instead of being taken for another request's revocation.
_RECORD_KEYS = frozenset({"phase", "at", "note", "set"})

_fdatasync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
# read-write: a held log is read through the descriptor that holds its lock
_LOG_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | _NOFOLLOW


class JournalError(OmictlError):
    """The journal cannot be read or written: a problem of the local state folder (disk
    full, permissions, a damaged file), not a bug, so exit 2 as the config and pin files
    (CLI.md has no code of its own for local files)."""

    exit_code = ExitCode.USAGE
    code = "journal"


class InProgress(OmictlError):
    """Another omictl run holds this service's lock."""

    exit_code = ExitCode.UNAVAILABLE
    code = "in_progress"


def _encode(value: Any) -> str:
    # a peer's controls and lone surrogates come out as \uXXXX escapes (errors.inert_json)
    return compact_json_text(value)


#: Stored in place of an unbind request's embedded receipt when it is the journal's own
#: receipt (every try of an unbind embeds it: up to 1 MiB each), and put back on reading.
RECEIPT_REF = {"journal_ref": "receipt"}
#: Notes are messages; peers' words in them are already cut short, this is a last bound.
MAX_NOTE_CHARS = 2000


def _refers_to_receipt(item: Any) -> bool:
    data = item.get("data") if isinstance(item, dict) else None
    return isinstance(data, dict) and data.get("provider_receipt") == RECEIPT_REF


def _stored(journal: Journal, name: str, value: Any) -> Any:
    """What the log stores for a field: its value, except that an unbind request refers to
    the journal's receipt instead of repeating it."""
    if name != "unbind_request" or not isinstance(value, dict) or journal.receipt is None:
        return value
    data = value.get("data")
    if not isinstance(data, dict) or data.get("provider_receipt") != journal.receipt:
        return value
    return {**value, "data": {**data, "provider_receipt": RECEIPT_REF}}


def _copy(value: Any) -> Any:
    """A private copy of a field's value (objects are copied through JSON, exactly as the
    log would give them back)."""
    return json.loads(_encode(value)) if isinstance(value, dict) else value


@dataclass
class Journal:
    """The recorded progress of one service's decommission."""

    app_id: str
    service_id: str
    phase: str = "new"
    data_handling: str = "wipe"
    skip_provider: bool = False
    termination_request: dict[str, Any] | None = None
    receipt: dict[str, Any] | None = None
    rejected_receipt: dict[str, Any] | None = None
    rejection_reason: str | None = None
    unbind_request: dict[str, Any] | None = None
    revocation_record: dict[str, Any] | None = None
    rejected_record: dict[str, Any] | None = None
    bundle_path: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    # What the log on disk holds: each field's value (a private copy, never the live object)
    # and where its valid part ends (bytes after that are a torn record to cut off before
    # appending). Not compared.
    written: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    disk_end: int = field(default=0, repr=False, compare=False)
    disk_size: int = field(default=0, repr=False, compare=False)
    #: a record was appended without fdatasync (JournalStore.save(sync=False))
    unsynced: bool = field(default=False, repr=False, compare=False)
    legacy_path: Path | None = field(default=None, repr=False, compare=False)

    def fields(self) -> dict[str, Any]:
        """The journal's data fields (everything but ids, phase and history)."""
        return {name: getattr(self, name) for name in FIELDS}

    def to_json(self) -> dict[str, Any]:
        """The whole state as one JSON object (format version 1's document)."""
        return {
            "format": JOURNAL_FORMAT,
            "format_version": LEGACY_VERSION,
            "app_id": self.app_id,
            "service_id": self.service_id,
            "phase": self.phase,
            **self.fields(),
            "history": self.history,
        }

    @classmethod
    def from_json(cls, value: Any, *, path: Path) -> Journal:
        """Validate a format-1 journal document read from ``path``. Raises
        :class:`JournalError`."""
        hint = _hint(path)
        if not isinstance(value, dict) or value.get("format") != JOURNAL_FORMAT:
            raise JournalError(f"{path} is not an omictl journal", hint=hint)
        if value.get("format_version") != LEGACY_VERSION or value.get("phase") not in PHASES:
            raise JournalError(f"{path} has an unknown journal version or phase", hint=hint)
        history = value.get("history", [])
        if not isinstance(history, list):
            raise JournalError(f"{path}: history must be a list", hint=hint)
        app_id = value.get("app_id")
        service_id = value.get("service_id")
        if not isinstance(app_id, str) or not isinstance(service_id, str):
            raise JournalError(f"{path}: app_id and service_id must be strings", hint=hint)
        journal = cls(app_id=app_id, service_id=service_id, phase=value["phase"])
        journal.history = history
        _apply(journal, {k: value[k] for k in FIELDS if k in value}, path=path, legacy=True)
        return journal


def _hint(path: Path) -> str:
    return f"inspect {path}; remove it only if you know no DELETE was sent"


def _apply(journal: Journal, values: Any, *, path: Path, legacy: bool = False) -> None:
    """Set ``values`` (field -> value) on ``journal``, checking every type."""
    hint = _hint(path)
    if not isinstance(values, dict):
        raise JournalError(f"{path}: a record's set must be an object", hint=hint)
    for name in sorted(values, key=lambda n: n != "receipt"):  # the receipt first
        item = values[name]
        if name == "unbind_request" and _refers_to_receipt(item):
            if journal.receipt is None:
                raise JournalError(
                    f"{path}: the unbind request refers to a receipt the journal does not hold",
                    hint=hint,
                )
            item = {**item, "data": {**item["data"], "provider_receipt": journal.receipt}}
        if name in _OBJECT_FIELDS:
            ok = item is None or isinstance(item, dict)
            kind = "an object"
        elif name in _TEXT_FIELDS:
            ok = item is None or isinstance(item, str)
            kind = "a string"
        elif name == "skip_provider":
            ok = isinstance(item, bool) or (legacy and item is None)
            kind = "true or false"
        else:
            raise JournalError(f"{path}: unknown journal field {name!r}", hint=hint)
        if not ok:
            raise JournalError(f"{path}: {name} must be {kind}", hint=hint)
        if name == "data_handling":
            item = item or "wipe"
        elif name == "skip_provider":
            item = bool(item)
        setattr(journal, name, item)


def _replay(raw: bytes, *, path: Path, app_id: str, service_id: str) -> Journal:
    """The journal a log holds.

    A torn write can only leave the end of the log unfinished: bytes after the last
    newline, or a line holding NUL bytes (a power cut can persist the new length before
    the data) and every line after it (two records can share one fdatasync, and a later
    block may reach the disk before an earlier one). Those are left out, and the journal
    is what it was before that write. Any other unreadable line is damage, refused with
    :class:`JournalError`. A log
    with a header but no record yet counts as empty (its first write was cut short), so
    the next write starts it over and a format-1 journal beside it still rules.
    """
    hint = _hint(path)
    journal = Journal(app_id=app_id, service_id=service_id)
    journal.disk_size = len(raw)
    lines = raw.split(b"\n")
    lines.pop()  # after the last newline: b"" when the last write completed
    offset = 0
    for number, line in enumerate(lines):
        try:
            record = parse_json(line, what=f"{path} line {number + 1}", error=JournalError)
        except JournalError:
            if b"\x00" in line:
                # Blocks that never reached the disk read back as NUL bytes: the fdatasync
                # covering this record never returned, so neither this record nor any after
                # it (written later, covered by the same or a later fdatasync) was relied
                # on. They are a torn end: the journal is what it was before this record.
                break
            raise JournalError(f"{path} line {number + 1} is damaged", hint=hint) from None
        if number == 0:
            _check_header(record, path=path, app_id=app_id, service_id=service_id)
            journal.history = list(record.get("history", []))  # carried from format 1
        else:
            _apply_record(journal, record, path=path, number=number + 1)
        offset += len(line) + 1
        if number:
            journal.disk_end = offset
    if journal.disk_end:  # else no complete record: the next write starts the log over
        journal.written = {name: _copy(value) for name, value in journal.fields().items()}
    else:
        journal.history = []
    return journal


_HEADER_KEYS = frozenset({"format", "format_version", "app_id", "service_id", "history"})


def _check_header(record: Any, *, path: Path, app_id: str, service_id: str) -> None:
    hint = _hint(path)
    if not isinstance(record, dict) or record.get("format") != JOURNAL_FORMAT:
        raise JournalError(f"{path} is not an omictl journal", hint=hint)
    if not _HEADER_KEYS.issuperset(record):
        raise JournalError(f"{path} has an unknown journal header", hint=hint)
    if record.get("format_version") != JOURNAL_VERSION:
        raise JournalError(
            f"{path} has journal version {record.get('format_version')!r}; this omictl reads "
            f"version {JOURNAL_VERSION}",
            hint="use the omictl that wrote it to finish that run",
        )
    if (record.get("app_id"), record.get("service_id")) != (app_id, service_id):
        raise JournalError(
            f"{path} belongs to {record.get('app_id')}/{record.get('service_id')}", hint=hint
        )
    if not isinstance(record.get("history", []), list):
        raise JournalError(f"{path}: history must be a list", hint=hint)


def _apply_record(journal: Journal, record: Any, *, path: Path, number: int) -> None:
    hint = _hint(path)
    if not isinstance(record, dict) or not _RECORD_KEYS.issuperset(record):
        raise JournalError(f"{path} line {number} is not a journal record", hint=hint)
    phase, at, note = record.get("phase"), record.get("at"), record.get("note")
    if phase not in PHASES or not isinstance(at, int) or isinstance(at, bool):
        raise JournalError(f"{path} line {number} has an unknown phase or time", hint=hint)
    if note is not None and not isinstance(note, str):
        raise JournalError(f"{path} line {number}: note must be a string", hint=hint)
    _apply(journal, record.get("set", {}), path=path)
    journal.phase = phase
    journal.history.append({"phase": phase, "at": at, **({"note": note} if note else {})})


class JournalStore:
    """Journals and their locks under one state folder."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._held: dict[Path, int] = {}  # log path -> descriptor holding its flock
        self._held_lock = threading.Lock()
        # every save asks for the log's path: build each once (one entry per service this
        # store touches; a race only builds the same path twice)
        self._paths: dict[tuple[str, str], Path] = {}

    def path_for(self, app_id: str, service_id: str) -> Path:
        """The journal (log) of one service (ids are validated before they get here)."""
        path = self._paths.get((app_id, service_id))
        if path is None:
            path = self._paths[app_id, service_id] = (
                self.state_dir / app_id / f"{service_id}{JOURNAL_SUFFIX}"
            )
        return path

    def _held_fd(self, path: Path) -> int | None:
        """The descriptor holding the log's lock, if this run holds it."""
        with self._held_lock:
            return self._held.get(path)

    def legacy_path_for(self, app_id: str, service_id: str) -> Path:
        """Where omictl before the log kept the journal (format version 1)."""
        return self.state_dir / app_id / f"{service_id}{LEGACY_SUFFIX}"

    def load(self, app_id: str, service_id: str) -> Journal:
        """The journal of one service, or a fresh one. Raises :class:`JournalError`."""
        path = self.path_for(app_id, service_id)
        held = self._held_fd(path)
        if held is not None:  # locked by this run: read through the lock's descriptor
            raw = _read_held(held, path)
        elif path.exists():
            raw = read_capped(path, limit=MAX_JOURNAL_BYTES, error=JournalError)
        else:
            raw = b""
        journal = _replay(raw, path=path, app_id=app_id, service_id=service_id)
        if journal.disk_end == 0:
            legacy = self.legacy_path_for(app_id, service_id)
            if legacy.exists():
                return self._load_legacy(legacy, journal, log=path)
        return journal

    def _load_legacy(self, legacy: Path, fresh: Journal, *, log: Path) -> Journal:
        """The format-1 journal at ``legacy``, for a service whose ``log`` is empty."""
        app_id, service_id = fresh.app_id, fresh.service_id
        raw = read_capped(legacy, limit=MAX_JOURNAL_BYTES, error=JournalError)
        document = parse_json(raw, what=str(legacy), error=JournalError)
        if isinstance(document, dict) and "moved_to" in document:
            # the stub a migration leaves: the log it points to should hold everything
            raise JournalError(
                f"{legacy} says its journal moved to {log}, which is missing or empty",
                hint=f"restore {log}; remove {legacy} (a stub) only if you know no DELETE was sent",
            )
        journal = Journal.from_json(document, path=legacy)
        if (journal.app_id, journal.service_id) != (app_id, service_id):
            raise JournalError(f"{legacy} belongs to {journal.app_id}/{journal.service_id}")
        journal.disk_size = fresh.disk_size  # the log (maybe a torn start) is rewritten
        journal.legacy_path = legacy
        return journal

    def save(
        self, journal: Journal, *, phase: str, now: int, note: str = "", sync: bool = True
    ) -> None:
        """Move ``journal`` to ``phase`` and append that record durably (fdatasync).

        The record carries only the fields that changed since the last one written; a
        journal that has nothing on disk yet (or comes from a format-1 file) starts the
        log with a header and its whole state.

        ``sync=False`` appends without the fdatasync, for a record that the next synced
        save (or :meth:`flush`) makes durable before anything depends on it: the record is
        then safe from a crash of this process (it is in the kernel), and from a power cut
        once that next fdatasync returns (one fdatasync covers every earlier write).
        """
        if phase not in PHASES:  # pragma: no cover - programming error
            raise JournalError(f"unknown phase {phase!r}")
        fresh = journal.disk_end == 0
        written = journal.written
        # compare with what is on disk (C-level equality); encode only what changed
        # A field never written reads back as None, so a fresh log leaves None fields out
        # (an older omictl then reads a log that never needed a newer field).
        changed = {
            name: value
            for name, value in journal.fields().items()
            if (value is not None if fresh else written.get(name) != value)
        }
        stored = {name: _stored(journal, name, value) for name, value in changed.items()}
        encoded = {name: _encode(value) for name, value in stored.items()}
        record = f'{{"at":{int(now)},'
        note = note[:MAX_NOTE_CHARS]
        if note:
            record += f'"note":{_encode(note)},'
        record += f'"phase":"{phase}","set":{{'
        record += ",".join(f'"{name}":{text}' for name, text in encoded.items()) + "}}\n"
        if fresh:
            header = {
                "format": JOURNAL_FORMAT,
                "format_version": JOURNAL_VERSION,
                "app_id": journal.app_id,
                "service_id": journal.service_id,
            }
            if journal.history:  # carried over from a format-1 journal
                header["history"] = journal.history
            record = _encode(header) + "\n" + record
        data = record.encode("utf-8")
        path = self.path_for(journal.app_id, journal.service_id)
        try:
            self._append(path, data, keep=journal.disk_end, size=journal.disk_size, sync=sync)
        except JournalError:
            # part of the record may be on disk: the next save cuts it off before appending
            journal.disk_size = journal.disk_end + len(data)
            raise
        journal.phase = phase
        journal.history.append({"phase": phase, "at": int(now), **({"note": note} if note else {})})
        for name, value in changed.items():
            if stored[name] is value and isinstance(value, dict):
                written[name] = json.loads(encoded[name])  # _copy without encoding again
            else:
                written[name] = _copy(value)
        journal.disk_end += len(data)
        journal.disk_size = journal.disk_end
        journal.unsynced = not sync
        if fresh and journal.legacy_path is not None:
            # The log now holds everything the format-1 file held. Leave a stub that
            # format-1 readers (an older omictl) refuse, rather than no file at all, which
            # they would take for a service nobody started on. If the stub cannot be
            # written, the format-1 file stays as it is: this omictl prefers the log, and
            # an older one resumes from what the file holds (the receipt).
            with contextlib.suppress(OmictlError):
                atomic_write_json(
                    journal.legacy_path,
                    {
                        "format": JOURNAL_FORMAT,
                        "format_version": JOURNAL_VERSION,
                        "app_id": journal.app_id,
                        "service_id": journal.service_id,
                        "moved_to": path.name,
                    },
                )
            journal.legacy_path = None

    def flush(self, journal: Journal) -> None:
        """fdatasync ``journal``'s log if a record was appended with ``sync=False`` since
        the last fdatasync. Raises :class:`JournalError`."""
        if not journal.unsynced:
            return
        path = self.path_for(journal.app_id, journal.service_id)
        held = self._held_fd(path)
        try:
            # never O_CREAT: a log that vanished must not come back empty and "synced"
            fd = os.open(path, os.O_RDWR | _NOFOLLOW) if held is None else held
            try:
                _fdatasync(fd)
            finally:
                if held is None:
                    os.close(fd)
        except OSError as exc:
            raise JournalError(f"cannot write {path}: {exc.strerror}") from exc
        journal.unsynced = False

    def _append(self, path: Path, data: bytes, *, keep: int, size: int, sync: bool) -> None:
        """Append ``data`` to the log at ``path`` after its first ``keep`` bytes (cutting
        off a torn record when the file is ``size`` > ``keep`` bytes), then fdatasync
        (unless not ``sync``)."""
        held = self._held_fd(path)
        created = False
        try:
            if held is None:
                ensure_private_dir(path.parent, error=JournalError)
                fd = os.open(path, _LOG_FLAGS, PRIVATE_FILE_MODE)
            else:
                fd = held
            try:
                created = keep == 0
                if size > keep:
                    # a torn last record (or a log that never got a record): cut it off,
                    # keeping a copy of the cut bytes for whoever investigates
                    _keep_torn(path, keep)
                    os.ftruncate(fd, keep)
                try:
                    write_all(fd, data)
                    if sync:
                        _fdatasync(fd)
                except BaseException:  # OSError, or an interrupt between two writes
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, keep)  # leave no half record for a later append
                    raise
            finally:
                if held is None:
                    os.close(fd)
        except OSError as exc:
            raise JournalError(f"cannot write {path}: {exc.strerror}") from exc
        if created:
            fsync_dir(path.parent)  # the log's own name must survive a power cut too

    @contextlib.contextmanager
    def locked(
        self, app_id: str, service_id: str, *, wait: float = 120.0, poll: float = 0.1
    ) -> Iterator[bool]:
        """Hold the service's exclusive lock; wait up to ``wait`` seconds for another run.

        The lock is an ``flock`` on the journal log itself (created empty if missing).
        Yields whether it had to wait (another run held the lock, so what was read before
        may be stale). Raises :class:`InProgress` if the other run still holds it after
        ``wait``.
        """
        path = self.path_for(app_id, service_id)
        ensure_private_dir(path.parent, error=JournalError)
        try:
            fd = os.open(path, _LOG_FLAGS, PRIVATE_FILE_MODE)
        except OSError as exc:
            raise JournalError(
                f"cannot open journal {path}: {exc.strerror}",
                hint=f"nothing was sent: free space or fix the permissions of {path.parent}, "
                "then re-run the same command",
            ) from exc
        try:
            deadline = time.monotonic() + wait
            waited = False
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    waited = True
                    if time.monotonic() >= deadline:
                        raise InProgress(
                            f"another omictl run is decommissioning {app_id}/{service_id}",
                            hint=f"wait for it to finish, then re-run (journal: {path})",
                        ) from None
                    time.sleep(poll)
            with self._held_lock:
                self._held[path] = fd
            try:
                yield waited
            finally:
                with self._held_lock:
                    self._held.pop(path, None)
        finally:
            os.close(fd)  # closing the descriptor releases the flock


def _read_held(fd: int, path: Path) -> bytes:
    """The whole log behind ``fd`` (as :func:`~omictl.fsutil.read_capped` reads a path)."""
    try:
        size = os.fstat(fd).st_size
        if size > MAX_JOURNAL_BYTES:
            raise JournalError(f"{path} is larger than {MAX_JOURNAL_BYTES} bytes")
        chunks = []
        offset = 0
        while offset < size:
            chunk = os.pread(fd, size - offset, offset)
            if not chunk:
                break  # cut shorter meanwhile (only by hand: this run holds the lock)
            chunks.append(chunk)
            offset += len(chunk)
    except OSError as exc:
        raise JournalError(f"cannot read {path}: {exc.strerror}") from exc
    return b"".join(chunks)


def _keep_torn(path: Path, keep: int) -> None:
    """Copy the bytes of ``path`` after ``keep``, if any, to
    ``<name>.torn-<keep>-<time in ns>`` (best effort: never raises)."""
    with contextlib.suppress(OSError, OmictlError):
        with path.open("rb") as handle:
            handle.seek(keep)
            torn = handle.read(MAX_JOURNAL_BYTES)
        if torn:
            atomic_write_bytes(path.with_name(f"{path.name}.torn-{keep}-{time.time_ns()}"), torn)


def check_ids_are_paths(app_id: str, service_id: str) -> None:
    """Defence in depth: ids used as path parts must not climb out of the state folder."""
    for part in (app_id, service_id):
        if not part or "/" in part or "\\" in part or part in {".", ".."} or "\x00" in part:
            raise UsageError(f"{part!r} cannot be used as a file name")
