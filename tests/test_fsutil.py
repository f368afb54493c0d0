"""Crash-safe writes' JSON layouts (omictl/fsutil.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
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
    lines = text.split("\n")  # JSON escapes "\n" inside strings, so only members break lines
    assert len(lines) == (len(value) + 2 if value else 1)


def test_members_layout_of_an_empty_object() -> None:
    assert json_members({}) == "{}"


def test_members_layout_refuses_keys_that_are_not_strings() -> None:
    with pytest.raises(TypeError):
        json_members({1: "a"})  # type: ignore[dict-item]


def test_atomic_write_json_layouts(tmp_path: Path) -> None:
    value = {"b": {"y": [1, 2]}, "a": "é"}
    atomic_write_json(tmp_path / "i.json", value)
    atomic_write_json(tmp_path / "c.json", value, compact=True)
    atomic_write_json(tmp_path / "m.json", value, members=True)
    atomic_write_json(tmp_path / "l.json", [1, 2], members=True)  # not an object: one line
    read = {n: (tmp_path / f"{n}.json").read_text(encoding="utf-8") for n in ("i", "c", "m", "l")}
    assert read["i"] == '{\n  "a": "é",\n  "b": {\n    "y": [\n      1,\n      2\n    ]\n  }\n}\n'
    assert read["c"] == '{"a":"é","b":{"y":[1,2]}}\n'
    assert read["m"] == '{\n  "a": "é",\n  "b": {"y":[1,2]}\n}\n'
    assert read["l"] == "[1,2]\n"
    assert (tmp_path / "i.json").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("layout", [{}, {"compact": True}, {"members": True}])
def test_unprintable_text_is_written_escaped(tmp_path: Path, layout: dict[str, bool]) -> None:
    """A lone surrogate ("\\ud800": valid JSON a peer may send, but no UTF-8) and a C1
    control are written as \\u escapes instead of failing or landing raw in the file;
    printable UTF-8 stays as it is; the file parses back to the same value."""
    value = {"answer": {"message": "purged \ud800 \x9b2J é"}}
    path = tmp_path / "x.json"
    atomic_write_json(path, value, **layout)
    text = path.read_bytes().decode("utf-8")
    assert "\\ud800" in text and "\\u009b2J" in text and "é" in text
    assert json.loads(text) == value
