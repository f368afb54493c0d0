"""The per-service journal: what a decommission has done so far, so a re-run resumes.

One JSON file per (app, service) under ``<home>/state/<app_id>/<service_id>.json``,
rewritten atomically before and after every step (``fsutil.atomic_write_json``), and a
lock file beside it held with ``flock`` for the whole run, so two runs on the same service
never interleave (the second waits, then resumes from what the first recorded).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omictl.core.envelope import parse_json
from omictl.errors import ExitCode, OmictlError, UsageError
from omictl.fsutil import atomic_write_json, ensure_private_dir, read_capped

JOURNAL_FORMAT = "omictl-journal"
JOURNAL_VERSION = 1
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


class JournalError(OmictlError):
    """The journal cannot be read or written."""

    code = "journal"


class InProgress(OmictlError):
    """Another omictl run holds this service's lock."""

    exit_code = ExitCode.UNAVAILABLE
    code = "in_progress"


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
    bundle_path: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The on-disk form."""
        return {
            "format": JOURNAL_FORMAT,
            "format_version": JOURNAL_VERSION,
            "app_id": self.app_id,
            "service_id": self.service_id,
            "phase": self.phase,
            "data_handling": self.data_handling,
            "skip_provider": self.skip_provider,
            "termination_request": self.termination_request,
            "receipt": self.receipt,
            "rejected_receipt": self.rejected_receipt,
            "rejection_reason": self.rejection_reason,
            "unbind_request": self.unbind_request,
            "revocation_record": self.revocation_record,
            "bundle_path": self.bundle_path,
            "history": self.history,
        }

    @classmethod
    def from_json(cls, value: Any, *, path: Path) -> Journal:
        """Validate a journal read from ``path``. Raises :class:`JournalError`."""
        hint = f"inspect {path}; remove it only if you know no DELETE was sent"
        if not isinstance(value, dict) or value.get("format") != JOURNAL_FORMAT:
            raise JournalError(f"{path} is not an omictl journal", hint=hint)
        if value.get("format_version") != JOURNAL_VERSION or value.get("phase") not in PHASES:
            raise JournalError(f"{path} has an unknown journal version or phase", hint=hint)

        def opt_dict(key: str) -> dict[str, Any] | None:
            item = value.get(key)
            if item is not None and not isinstance(item, dict):
                raise JournalError(f"{path}: {key} must be an object", hint=hint)
            return item

        def opt_str(key: str) -> str | None:
            item = value.get(key)
            if item is not None and not isinstance(item, str):
                raise JournalError(f"{path}: {key} must be a string", hint=hint)
            return item

        history = value.get("history", [])
        if not isinstance(history, list):
            raise JournalError(f"{path}: history must be a list", hint=hint)
        app_id = value.get("app_id")
        service_id = value.get("service_id")
        if not isinstance(app_id, str) or not isinstance(service_id, str):
            raise JournalError(f"{path}: app_id and service_id must be strings", hint=hint)
        return cls(
            app_id=app_id,
            service_id=service_id,
            phase=value["phase"],
            data_handling=opt_str("data_handling") or "wipe",
            skip_provider=bool(value.get("skip_provider", False)),
            termination_request=opt_dict("termination_request"),
            receipt=opt_dict("receipt"),
            rejected_receipt=opt_dict("rejected_receipt"),
            rejection_reason=opt_str("rejection_reason"),
            unbind_request=opt_dict("unbind_request"),
            revocation_record=opt_dict("revocation_record"),
            bundle_path=opt_str("bundle_path"),
            history=history,
        )


class JournalStore:
    """Journals and their locks under one state folder."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    def path_for(self, app_id: str, service_id: str) -> Path:
        """The journal file of one service (ids are validated before they get here)."""
        return self.state_dir / app_id / f"{service_id}.json"

    def load(self, app_id: str, service_id: str) -> Journal:
        """The journal of one service, or a fresh one. Raises :class:`JournalError`."""
        path = self.path_for(app_id, service_id)
        if not path.exists():
            return Journal(app_id=app_id, service_id=service_id)
        raw = read_capped(path, limit=MAX_JOURNAL_BYTES, error=JournalError)
        journal = Journal.from_json(parse_json(raw, what=str(path), error=JournalError), path=path)
        if (journal.app_id, journal.service_id) != (app_id, service_id):
            raise JournalError(f"{path} belongs to {journal.app_id}/{journal.service_id}")
        return journal

    def save(self, journal: Journal, *, phase: str, now: int, note: str = "") -> None:
        """Move ``journal`` to ``phase`` and write it atomically (old or new, never torn)."""
        if phase not in PHASES:  # pragma: no cover - programming error
            raise JournalError(f"unknown phase {phase!r}")
        journal.phase = phase
        journal.history.append({"phase": phase, "at": now, **({"note": note} if note else {})})
        atomic_write_json(
            self.path_for(journal.app_id, journal.service_id),
            journal.to_json(),
            error=JournalError,
            compact=True,  # written 5x per service: the hot path of a batch
        )

    @contextlib.contextmanager
    def locked(
        self, app_id: str, service_id: str, *, wait: float = 120.0, poll: float = 0.1
    ) -> Iterator[bool]:
        """Hold the service's exclusive lock; wait up to ``wait`` seconds for another run.

        Yields whether it had to wait (another run held the lock, so what was read before
        may be stale). Raises :class:`InProgress` if the other run still holds it after
        ``wait``.
        """
        lock_path = self.path_for(app_id, service_id).with_suffix(".lock")
        ensure_private_dir(lock_path.parent, error=JournalError)
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise JournalError(f"cannot open lock {lock_path}: {exc.strerror}") from exc
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
                            hint=f"wait for it to finish, then re-run (lock: {lock_path})",
                        ) from None
                    time.sleep(poll)
            yield waited
        finally:
            os.close(fd)  # closing the descriptor releases the flock


def check_ids_are_paths(app_id: str, service_id: str) -> None:
    """Defence in depth: ids used as path parts must not climb out of the state folder."""
    for part in (app_id, service_id):
        if not part or "/" in part or "\\" in part or part in {".", ".."} or "\x00" in part:
            raise UsageError(f"{part!r} cannot be used as a file name")
