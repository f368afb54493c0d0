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


def test_bundle_file_has_one_top_level_member_per_line(tmp_path: Path) -> None:
    """Bundles are written by the C JSON encoder (fast), yet stay readable: one member per
    line, keys sorted, each value on its line; the file parses back to the bundle."""
    import json

    value = bundle("svc-1", "RCPT-0001")
    value["termination_receipt"] = {"data": {"receipt_id": "RCPT-0001", "note": "é"}, "sig": "ab"}
    path = Archive(tmp_path).save_bundle(value)
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[0] == "{" and lines[-1] == "}" and text.endswith("}\n")
    keys = [json.loads("{" + line.rstrip(",") + "}") for line in lines[1:-1]]
    assert [next(iter(k)) for k in keys] == sorted(value)
    receipt = '{"data":{"note":"é","receipt_id":"RCPT-0001"},"sig":"ab"}'
    assert f'  "termination_receipt": {receipt}' in lines
    assert json.loads(text) == value
