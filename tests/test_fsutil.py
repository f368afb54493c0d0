"""Crash-safe writes' JSON layouts (omictl/fsutil.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from omictl.fsutil import atomic_write_json, json_members

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(st.dictionaries(st.text(), JSON, max_size=6))
def test_members_layout_round_trips_one_member_per_line(value: dict[str, Any]) -> None:
    text = json_members(value)
    assert json.loads(text) == value
    lines = text.split("\n")
    assert len(lines) == (len(value) + 2 if value else 1)  # newlines in values are escaped


def test_members_layout_of_an_empty_object() -> None:
    assert json_members({}) == "{}"


def test_atomic_write_json_layouts(tmp_path: Path) -> None:
    value = {"b": {"y": [1, 2]}, "a": "é"}
    atomic_write_json(tmp_path / "i.json", value)
    atomic_write_json(tmp_path / "c.json", value, compact=True)
    atomic_write_json(tmp_path / "m.json", value, members=True)
    atomic_write_json(tmp_path / "l.json", [1, 2], members=True)  # not an object: one line
    read = {n: (tmp_path / f"{n}.json").read_text(encoding="utf-8") for n in ("i", "c", "m", "l")}
    assert read["i"] == json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert read["c"] == '{"a":"é","b":{"y":[1,2]}}\n'
    assert read["m"] == '{\n  "a": "é",\n  "b": {"y":[1,2]}\n}\n'
    assert read["l"] == "[1,2]\n"
