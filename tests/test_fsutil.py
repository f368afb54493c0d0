"""Crash-safe writes' JSON layouts (omictl/fsutil.py)."""

from __future__ import annotations

import itertools
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import omictl.fsutil as fsutil
from omictl.fsutil import atomic_write_json, fsync_dir, json_members

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


def test_concurrent_folder_fsyncs_are_shared_and_each_covers_its_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group commit: every caller returns only after an fsync of the folder that started
    after it called has ended; 16 callers at once need far fewer than 16 fsyncs."""
    tick = itertools.count()  # a global order of events (next() is atomic here)
    syncs: list[tuple[int, int]] = []

    def slow_fsync(path: str) -> None:
        start = next(tick)
        time.sleep(0.02)
        syncs.append((start, next(tick)))

    monkeypatch.setattr(fsutil, "_fsync_dir_now", slow_fsync)
    calls: list[tuple[int, int]] = []
    barrier = threading.Barrier(16)

    def caller() -> None:
        barrier.wait()
        called = next(tick)
        fsync_dir(tmp_path)
        calls.append((called, next(tick)))

    threads = [threading.Thread(target=caller) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 16
    for called, returned in calls:
        assert any(called < start and end < returned for start, end in syncs), (called, syncs)
    assert len(syncs) < 8
    assert fsutil._DIR_STATE == {}  # nothing left behind once nobody waits


def test_a_lone_folder_fsync_really_syncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    real = fsutil._fsync_dir_now
    monkeypatch.setattr(fsutil, "_fsync_dir_now", lambda path: (seen.append(path), real(path)))
    fsync_dir(tmp_path)
    fsync_dir(tmp_path)  # a later call is never covered by an earlier fsync
    assert seen == [str(tmp_path), str(tmp_path)]
    fsync_dir(tmp_path / "missing")  # best effort: a folder that is gone is no error


def test_an_interrupted_folder_fsync_covers_nobody(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runner's fsync is interrupted: waiters must not take it as done; one of them
    runs its own, and the folder's state is cleaned up."""
    real: list[int] = []
    started = threading.Event()
    release = threading.Event()

    def fsync(path: str) -> None:
        if not started.is_set():
            started.set()
            release.wait(5)
            raise KeyboardInterrupt  # not an OSError: not swallowed
        real.append(1)

    monkeypatch.setattr(fsutil, "_fsync_dir_now", fsync)
    failures: list[BaseException] = []

    def first() -> None:
        try:
            fsync_dir(tmp_path)
        except KeyboardInterrupt as exc:
            failures.append(exc)

    runner = threading.Thread(target=first)
    runner.start()
    assert started.wait(5)
    waiter = threading.Thread(target=fsync_dir, args=(tmp_path,))
    waiter.start()
    time.sleep(0.05)  # the waiter now waits on the runner's fsync
    release.set()
    runner.join(5)
    waiter.join(5)
    assert len(failures) == 1 and real == [1]  # the waiter ran a real fsync of its own
    assert fsutil._DIR_STATE == {}
