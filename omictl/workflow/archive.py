"""The local archive of evidence bundles (and of receipts that failed verification).

``<receipts_dir>/<app_id>/<service_id>--<bundle_id>.json`` per completed decommission;
``<receipts_dir>/rejected/<app_id>/<service_id>--<unix time>.json`` for a provider answer
that did not verify, kept for inspection. Every file is written atomically, mode 0600.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from omictl.core.envelope import parse_json
from omictl.core.evidence import BUNDLE_FORMAT
from omictl.errors import ExitCode, OmictlError, UsageError
from omictl.fsutil import atomic_write_json, read_capped

MAX_BUNDLE_BYTES = 8 * 1024 * 1024
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class ArchiveError(OmictlError):
    """The archive cannot be read or written: a problem of the local receipts folder, not
    a bug, so exit 2 (as :class:`~omictl.workflow.journal.JournalError`)."""

    exit_code = ExitCode.USAGE
    code = "archive"


def _safe(part: str, limit: int = 100) -> str:
    # bundle ids come from the provider's receipt: never trust them as file names
    cleaned = _UNSAFE.sub("_", part)[:limit].lstrip(".")
    return cleaned or "_"


class Archive:
    """Evidence bundles under one folder."""

    def __init__(self, receipts_dir: Path) -> None:
        self.root = receipts_dir

    def save_bundle(self, bundle: dict[str, Any]) -> Path:
        """Write a bundle atomically and return its path.

        The name ends in a digest of (app, service, bundle id): ids are truncated and made
        file-safe for readability, so without it two bundles could share a name (the
        receipt id comes from the provider and may contain anything).
        """
        app_id, service_id = str(bundle["app_id"]), str(bundle["service_id"])
        bundle_id = str(bundle["bundle_id"])
        digest = hashlib.sha256(
            json.dumps([app_id, service_id, bundle_id]).encode("utf-8")
        ).hexdigest()[:12]
        path = (
            self.root
            / _safe(app_id)
            / f"{_safe(service_id, 60)}--{_safe(bundle_id, 60)}--{digest}.json"
        )
        atomic_write_json(path, bundle, error=ArchiveError, members=True)
        return path

    def save_rejected(
        self,
        *,
        app_id: str,
        service_id: str,
        answer: Any,
        reason: str,
        now: int,
        source: str = "provider",
    ) -> Path:
        """Keep an answer that failed verification, with the reason, for inspection: the
        provider's (a receipt) or the registry's (``source="registry"``, a revocation
        record; its file name ends ``--record``)."""
        suffix = "" if source == "provider" else "--record"
        path = self.root / "rejected" / _safe(app_id) / f"{_safe(service_id)}--{now}{suffix}.json"
        atomic_write_json(
            path,
            {
                "app_id": app_id,
                "service_id": service_id,
                "received_at": now,
                "from": source,
                "reason": reason,
                "answer": answer,
            },
            error=ArchiveError,
        )
        return path

    def bundles(self, app_id: str | None = None) -> list[tuple[Path, dict[str, Any]]]:
        """Every readable bundle (optionally of one app), oldest first."""
        return self.scan(app_id)[0]

    def scan(
        self, app_id: str | None = None
    ) -> tuple[list[tuple[Path, dict[str, Any]]], list[tuple[Path, str]]]:
        """Every readable bundle (optionally of one app), oldest first, and every ``.json``
        file of the archive that cannot be read as one (path, why): evidence that went bad
        is reported, never skipped in silence."""
        if not self.root.is_dir():
            return [], []
        folders = (
            [self.root / _safe(app_id)]
            if app_id
            else sorted(p for p in self.root.iterdir() if p.is_dir() and p.name != "rejected")
        )
        found: list[tuple[Path, dict[str, Any]]] = []
        damaged: list[tuple[Path, str]] = []
        for folder in folders:
            if not folder.is_dir():
                continue
            for path in sorted(folder.glob("*.json")):
                try:
                    bundle = self.load(path)
                except OmictlError as exc:
                    damaged.append((path, exc.message))
                    continue
                if bundle.get("format") != BUNDLE_FORMAT:
                    damaged.append((path, f"{path} is not an omictl evidence bundle"))
                    continue
                found.append((path, bundle))
        found.sort(key=lambda item: (_created_at(item[1]), str(item[0])))
        return found, damaged

    @staticmethod
    def load(path: Path) -> dict[str, Any]:
        """Read one bundle file. Raises :class:`UsageError` if it is not a JSON object."""
        raw = read_capped(path, limit=MAX_BUNDLE_BYTES, error=UsageError)
        value = parse_json(raw, what=str(path), error=UsageError)
        if not isinstance(value, dict):
            raise UsageError(f"{path} is not a JSON object")
        return value

    def find(self, bundle_or_receipt_id: str) -> tuple[Path, dict[str, Any]]:
        """The bundle whose ``bundle_id`` or receipt id is the one given.

        Raises :class:`UsageError` (exit 2) when none matches.
        """
        matches = []
        found, damaged = self.scan()
        for path, bundle in found:
            receipt = bundle.get("termination_receipt") or {}
            data = receipt.get("data") if isinstance(receipt, dict) else None
            rid = data.get("receipt_id") if isinstance(data, dict) else None
            if bundle_or_receipt_id in (bundle.get("bundle_id"), rid):
                matches.append((path, bundle))
        if len(matches) == 1:
            return matches[0]
        if matches:
            # receipt ids are chosen by providers: two may pick the same one
            raise UsageError(
                f"receipt {bundle_or_receipt_id!r} names {len(matches)} bundles: "
                + ", ".join(f"{b.get('app_id')}/{b.get('service_id')}" for _, b in matches),
                hint="verify or copy the bundle file itself: "
                + " or ".join(str(p) for p, _ in matches),
            )
        # the file name save_bundle gives it: SERVICE--ID--<12 hex digits>.json
        named_as = re.compile(
            rf".+--{re.escape(_safe(bundle_or_receipt_id, 60))}--[0-9a-f]{{12}}\.json"
        )
        named = [(p, why) for p, why in damaged if named_as.fullmatch(p.name)]
        if named:  # its file is there, but it cannot be read
            path, why = named[0]
            raise ArchiveError(
                f"the bundle {bundle_or_receipt_id!r} cannot be read: {why}",
                hint=f"restore {path} from a backup; the registry's revocation stands either "
                "way (omictl status shows it)",
            )
        raise UsageError(
            f"no receipt {bundle_or_receipt_id!r} in the archive ({self.root})",
            hint="list them with: omictl receipts list"
            + (f" ({len(damaged)} file(s) there cannot be read)" if damaged else ""),
        )


def _created_at(bundle: dict[str, Any]) -> int:
    """A bundle's ``created_at`` for sorting; 0 when it is not an integer (a hand-edited
    file must not break the listing of the others)."""
    value = bundle.get("created_at")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
