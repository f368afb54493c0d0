"""``omictl`` with some of its local writes switched off: for cost attribution only.

Not a product feature and never installed: ``batch.py --without journal,bundle`` runs
omictl through this file to measure what the durable journal and the evidence bundle cost,
by comparing with a normal run. ``OMICTL_BENCH_WITHOUT`` names what to switch off:

* ``journal``: no journal log at all (no file, no lock, no record, no fdatasync); the
  in-memory journal still moves through its phases;
* ``bundle``: the evidence bundle is built but not written.

A run like this is not crash-safe and leaves no evidence: never use it for real work.

``OMICTL_BENCH_PHASES=FILE`` (used by ``phases.py``) also writes to FILE, as JSON, the
``time.time()`` at which the batch (``run_batch``) started and ended.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def switch_off(what: set[str]) -> None:
    """Patch omictl in this process so the named writes do nothing."""
    if "journal" in what:
        from omictl.workflow.journal import Journal, JournalStore

        def save(self: JournalStore, journal: Journal, *, phase: str, now: int, **_: Any) -> None:
            journal.phase = phase
            journal.history.append({"phase": phase, "at": now})

        @contextlib.contextmanager
        def locked(self: JournalStore, app_id: str, service_id: str, **_: Any) -> Iterator[bool]:
            yield False

        JournalStore.save = save  # type: ignore[method-assign]
        JournalStore.locked = locked  # type: ignore[method-assign]
    if "bundle" in what:
        from omictl.workflow.archive import Archive

        def save_bundle(self: Archive, bundle: dict[str, Any]) -> Path:
            return self.root / "not-written.json"

        Archive.save_bundle = save_bundle  # type: ignore[method-assign]


def record_phases(path: str) -> None:
    """Write when the batch started and ended to ``path`` (at exit, if it ran)."""
    import atexit
    import json
    import time

    marks: dict[str, float] = {}
    from omictl.workflow import batch

    run_batch = batch.run_batch

    def timed(*args: Any, **kwargs: Any) -> Any:
        marks["batch_start"] = time.time()
        try:
            return run_batch(*args, **kwargs)
        finally:
            marks["batch_end"] = time.time()

    batch.run_batch = timed  # type: ignore[assignment]

    def write() -> None:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(marks, handle)

    atexit.register(write)


def main() -> int:
    what = {w for w in os.environ.get("OMICTL_BENCH_WITHOUT", "").split(",") if w}
    unknown = what - {"journal", "bundle"}
    if unknown:
        print(f"without.py: unknown {sorted(unknown)}", file=sys.stderr)
        return 2
    switch_off(what)
    if os.environ.get("OMICTL_BENCH_PHASES"):
        record_phases(os.environ["OMICTL_BENCH_PHASES"])
    from omictl.cli import main as omictl_main

    sys.argv[0] = "omictl"
    omictl_main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
