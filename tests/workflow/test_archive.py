"""The evidence archive: file names that cannot collide, ambiguous ids refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from omictl.errors import UsageError
from omictl.workflow.archive import Archive

APP = "org.omiappreg.alice.business_app.7f8a9d"


def bundle(service_id: str, bundle_id: str) -> dict[str, object]:
    return {
        "format": "omictl-evidence",
        "app_id": APP,
        "service_id": service_id,
        "bundle_id": bundle_id,
        "created_at": 1,
        "termination_receipt": None,
    }


def test_separator_in_ids_cannot_collide(tmp_path: Path) -> None:
    """Service 'a' with receipt 'b--X' and service 'a--b' with receipt 'X' get two files."""
    archive = Archive(tmp_path)
    first = archive.save_bundle(bundle("a", "b--X"))
    second = archive.save_bundle(bundle("a--b", "X"))
    assert first != second
    assert first.exists() and second.exists()


def test_long_ids_cannot_collide(tmp_path: Path) -> None:
    """Ids equal in their first 100 characters still get distinct files."""
    archive = Archive(tmp_path)
    stem = "s" * 110
    assert archive.save_bundle(bundle(stem + "1", "R")) != archive.save_bundle(
        bundle(stem + "2", "R")
    )


def test_ambiguous_receipt_id_is_refused(tmp_path: Path) -> None:
    """Two providers issuing the same receipt id: find() names both, never picks one."""
    archive = Archive(tmp_path)
    archive.save_bundle(bundle("svc-1", "RCPT-0001"))
    archive.save_bundle(bundle("svc-2", "RCPT-0001"))
    with pytest.raises(UsageError) as info:
        archive.find("RCPT-0001")
    assert "2 bundles" in info.value.message
