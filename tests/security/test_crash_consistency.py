"""Crash consistency: SIGKILL every writer of omictl at random moments, many times.

A forked child loops one writer for ever (alternating old and new content) and reports
through a pipe, around every atomic write, the SHA-256 of the bytes it is about to write
(``B`` + digest) and that the write returned (``E``). The parent kills it with SIGKILL after
a random delay and then checks that the file on disk is exactly the last completed content
or the one in flight (never torn, empty or lost), that omictl's own reader accepts it, and
that later writes still work although the kills leave temporary files behind.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import random
import select
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from omictl import config, fsutil
from omictl.config import edit_config, load_config
from omictl.core.evidence import verify_bundle
from omictl.keystore import (
    PassphraseSource,
    change_passphrase,
    decrypt_seed,
    generate_key,
    import_key_bytes,
    import_seed,
    read_key_file,
    seal_seed,
)
from omictl.transport.pins import PinStore
from omictl.workflow.archive import Archive
from omictl.workflow.journal import JournalStore
from tests.security import helpers as h

pytestmark = pytest.mark.usefixtures("fast_kdf", "clean_omictl_env")

KILLS_PER_WRITER = 40
#: Random delay before the kill; the writers loop in a few milliseconds, so every phase of
#: an atomic write (temp file open, write, fsync, rename, folder fsync) gets hit.
MAX_DELAY_S = 0.04
SEED = hashlib.sha256(b"omictl crash seed").digest()
OTHER_SEED = hashlib.sha256(b"omictl crash other seed").digest()
PASSPHRASES = (b"crash passphrase one", b"crash passphrase two")


def source(passphrase: bytes) -> PassphraseSource:
    """A non-interactive passphrase source holding ``passphrase``."""
    return PassphraseSource(env={"OMICTL_PASSPHRASE": passphrase.decode()}, interactive=False)


def sha(path: Path) -> bytes:
    """SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).digest()


# ---------------------------------------------------------------------------- the writers


@dataclass
class Writer:
    """One of omictl's writes: its target file, the loop body, and its reader's check."""

    name: str
    target: Path
    #: the i-th write of the child's loop (i = 0, 1, 2, ...)
    write: Callable[[int], None]
    #: omictl's own reader on the file; raises if the file is not valid
    check: Callable[[], None]
    #: run once in the child before its loop (e.g. find the current passphrase)
    prepare: Callable[[], None] = lambda: None
    #: the longest random delay before the kill: longer for a slower write, so that the
    #: kills still land across many writes (several per kill on average)
    max_delay: float = MAX_DELAY_S


def key_writers(home: Path) -> list[Writer]:
    """keys generate, keys passwd, keys import (each on its own key file)."""
    keys = home / "keys"
    publics: set[bytes] = set()

    def generate(_i: int) -> None:
        generate_key(keys, "gen", passphrases=source(PASSPHRASES[0]), force=True)

    def check_generated() -> None:
        key = read_key_file(keys / "gen.json")
        assert len(decrypt_seed(key, PASSPHRASES[0])) == 32

    generate(0)

    import_seed(keys, "pw", SEED, passphrases=source(PASSPHRASES[0]))
    current = [0]

    def find_current() -> None:
        key = read_key_file(keys / "pw.json")
        for index, passphrase in enumerate(PASSPHRASES):
            with contextlib.suppress(Exception):
                decrypt_seed(key, passphrase)
                current[0] = index
                return
        raise AssertionError("pw.json opens with neither passphrase")

    def passwd(_i: int) -> None:
        old, new = PASSPHRASES[current[0]], PASSPHRASES[1 - current[0]]
        change_passphrase(keys, "pw", old=source(old), new=source(new))
        current[0] = 1 - current[0]

    def check_passwd() -> None:
        key = read_key_file(keys / "pw.json")
        seeds = set()
        for passphrase in PASSPHRASES:
            with contextlib.suppress(Exception):
                seeds.add(decrypt_seed(key, passphrase))
        assert seeds == {SEED}

    backups = [
        seal_seed(seed, PASSPHRASES[1], name="backup").to_json() for seed in (SEED, OTHER_SEED)
    ]
    import json

    raws = [json.dumps(doc).encode() for doc in backups]
    publics.update(bytes.fromhex(doc["public_key"]) for doc in backups)
    import_key_bytes(keys, "imp", raws[0])

    def import_(i: int) -> None:
        import_key_bytes(keys, "imp", raws[i % 2], force=True)

    def check_import() -> None:
        key = read_key_file(keys / "imp.json")
        assert key.public_key in publics
        assert decrypt_seed(key, PASSPHRASES[1]) in (SEED, OTHER_SEED)

    return [
        Writer("keys generate", keys / "gen.json", generate, check_generated),
        Writer("keys passwd", keys / "pw.json", passwd, check_passwd, prepare=find_current),
        Writer("keys import", keys / "imp.json", import_, check_import),
    ]


def archive_writer(home: Path) -> Writer:
    """Archive.save_bundle, alternating two bundles of the same receipt (same file)."""
    archive = Archive(home / "receipts")
    bundles = [h.bundle(), dict(h.bundle(), created_at=h.NOW + 99)]
    path = archive.save_bundle(bundles[0])

    def save(i: int) -> None:
        archive.save_bundle(bundles[i % 2])

    def check() -> None:
        report = verify_bundle(Archive.load(path))
        assert report.receipt_id == h.RECEIPT_ID

    return Writer("Archive.save_bundle", path, save, check)


def config_writer(home: Path) -> Writer:
    """config.edit_config (`config set`), alternating one setting between two values in a
    file that holds other profiles too."""
    path = home / "config.toml"
    for name, table in h.config_profiles().items():
        for key, value in table.items():
            edit_config(path, name, key, value)
    before = load_config(path)
    urls = ["https://one.example", "https://other.example"]
    edit_config(path, "default", "registry", urls[0])

    def save(i: int) -> None:
        edit_config(path, "default", "registry", urls[i % 2])

    def check() -> None:
        now = load_config(path)
        assert now["default"].pop("registry") in urls
        assert now == {
            **before,
            "default": {k: v for k, v in before["default"].items() if k != "registry"},
        }

    # an edit parses and writes the document with tomlkit, reads it back and takes a lock:
    # a few milliseconds, several times the other writers'
    return Writer("config.edit_config", path, save, check, max_delay=0.2)


def pin_writer(home: Path) -> Writer:
    """PinStore.pin, alternating two keys for the same registry (explicit re-pin)."""
    path = home / "known_registries.json"
    store = PinStore(path)
    keys = [h.REGISTRY.public_key, h.MASTER.public_key]
    store.pin(h.REGISTRY_URL, keys[0], name="OMI App Registry")

    def pin(i: int) -> None:
        store.pin(h.REGISTRY_URL, keys[i % 2], replace=True)

    def check() -> None:
        assert store.get(h.REGISTRY_URL) in keys

    return Writer("PinStore.pin", path, pin, check)


def all_writers(home: Path) -> list[Writer]:
    """Every writer omictl has, each set up with its initial ("old") content on disk."""
    home.mkdir(mode=0o700, exist_ok=True)
    return [
        *key_writers(home),
        archive_writer(home),
        config_writer(home),
        pin_writer(home),
    ]


WRITER_NAMES = [
    "keys generate",
    "keys passwd",
    "keys import",
    "Archive.save_bundle",
    "config.edit_config",
    "PinStore.pin",
]


# ---------------------------------------------------------------------------- the child


def _spy(fd: int) -> None:
    """Report every atomic write on ``fd``: ``B`` + SHA-256 of the content, then ``E``."""
    real = fsutil.atomic_write_bytes

    def spying(path: Path, content: bytes, **kwargs: Any) -> None:
        os.write(fd, b"B" + hashlib.sha256(content).digest())
        real(path, content, **kwargs)
        os.write(fd, b"E")

    fsutil.atomic_write_bytes = spying
    config.atomic_write_bytes = spying  # type: ignore[attr-defined]


def _child(writer: Writer, fd: int) -> None:
    """Loop the writer until killed; report a failure as ``X`` + message."""
    try:
        _spy(fd)
        writer.prepare()
        i = 0
        while True:
            writer.write(i)
            i += 1
    except BaseException as exc:
        os.write(fd, b"X" + f"{type(exc).__name__}: {exc}".encode()[:400])
    finally:
        os._exit(0)


@dataclass
class Kill:
    """What one kill left behind."""

    writes_started: int
    mid_write: bool
    ok: bool
    detail: str


def fork_and_kill(
    child: Callable[[int], None], rng: random.Random, max_delay: float = MAX_DELAY_S
) -> bytes:
    """Fork ``child(report_fd)`` (it never returns), SIGKILL it after a random delay, and
    return everything it reported through the pipe."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        os.close(read_fd)
        child(write_fd)
    os.close(write_fd)
    reports = bytearray()
    deadline = time.monotonic() + rng.uniform(0.0, max_delay)
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([read_fd], [], [], left)
        if ready:
            reports += os.read(read_fd, 1 << 16)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    while chunk := os.read(read_fd, 1 << 16):
        reports += chunk
    os.close(read_fd)
    return bytes(reports)


def kill_once(writer: Writer, rng: random.Random) -> Kill:
    """Fork a child looping ``writer``, SIGKILL it after a random delay, check the file."""
    before = sha(writer.target)
    reports = fork_and_kill(lambda fd: _child(writer, fd), rng, writer.max_delay)
    return _judge(writer, before, reports)


@dataclass
class Reports:
    """What a killed child said: the digest of the last write that returned, the one in
    flight (if any), how many it started, and its own failure (if any)."""

    done: bytes
    in_flight: bytes | None
    started: int
    failure: str | None


def read_reports(before: bytes, reports: bytes) -> Reports:
    """Decode ``B`` + digest (write starts), ``E`` (it returned), ``X`` + text (failed)."""
    done, in_flight, started, pos = before, None, 0, 0
    while pos < len(reports):
        tag = reports[pos : pos + 1]
        if tag == b"X":
            return Reports(done, None, started, "child failed: " + reports[pos + 1 :].decode())
        if tag == b"B":
            in_flight, pos, started = reports[pos + 1 : pos + 33], pos + 33, started + 1
        elif tag == b"E":
            assert in_flight is not None
            done, in_flight, pos = in_flight, None, pos + 1
        else:  # pragma: no cover - a torn report cannot happen: pipe writes < PIPE_BUF
            return Reports(done, None, started, f"unreadable report at {pos}")
    return Reports(done, in_flight, started, None)


def _judge(writer: Writer, before: bytes, raw: bytes) -> Kill:
    """The file must be the last completed content, or the one in flight; and readable."""
    said = read_reports(before, raw)
    done, in_flight, started = said.done, said.in_flight, said.started
    if said.failure is not None:
        return Kill(started, False, False, said.failure)
    allowed = {done} if in_flight is None else {done, in_flight}
    try:
        now = sha(writer.target)
    except FileNotFoundError:
        return Kill(started, in_flight is not None, False, "the file is gone")
    if now not in allowed:
        return Kill(started, in_flight is not None, False, "neither old nor new content")
    try:
        writer.check()
    except Exception as exc:
        return Kill(started, in_flight is not None, False, f"reader refused it: {exc!r}")
    return Kill(started, in_flight is not None, True, "")


def stray_temps(target: Path) -> list[Path]:
    """Temporary files of atomic writes of ``target`` left in its folder."""
    return sorted(p for p in target.parent.glob(f".{target.name}.*.tmp") if p.is_file())


@pytest.fixture(scope="module")
def kill_results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Kill every writer KILLS_PER_WRITER times; gather what was observed."""
    mp = pytest.MonkeyPatch()
    from omictl import keystore

    mp.setattr(keystore, "KDF_LIMITS", keystore.MIN_LIMITS)
    home = tmp_path_factory.mktemp("crash") / "home"
    rng = random.Random(20250116)
    results: dict[str, Any] = {}
    try:
        for writer in all_writers(home):
            kills = [kill_once(writer, rng) for _ in range(KILLS_PER_WRITER)]
            results[writer.name] = {
                "writer": writer,
                "kills": kills,
                "temps": stray_temps(writer.target),
            }
            h.count(f"crash {writer.name}: kills", len(kills))
            h.count(f"crash {writer.name}: kills mid-write", sum(k.mid_write for k in kills))
            h.count(f"crash {writer.name}: corrupt or lost", sum(not k.ok for k in kills))
            h.count(f"crash {writer.name}: writes started", sum(k.writes_started for k in kills))
            h.count(f"crash {writer.name}: temp files left", len(results[writer.name]["temps"]))
        results["home"] = home
        yield results
    finally:
        mp.undo()


# ---------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("name", WRITER_NAMES)
def test_sigkill_leaves_old_or_new_content(kill_results: dict[str, Any], name: str) -> None:
    """After every SIGKILL the file is exactly the old or the new content, and readable."""
    kills: list[Kill] = kill_results[name]["kills"]
    failures = [k.detail for k in kills if not k.ok]
    assert failures == []
    assert len(kills) == KILLS_PER_WRITER


@pytest.mark.parametrize("name", WRITER_NAMES)
def test_kills_landed_during_writes(kill_results: dict[str, Any], name: str) -> None:
    """The children really were writing when killed (the test is not vacuous)."""
    kills: list[Kill] = kill_results[name]["kills"]
    assert sum(k.writes_started for k in kills) > KILLS_PER_WRITER
    assert any(k.mid_write for k in kills)


@pytest.mark.parametrize("name", WRITER_NAMES)
def test_writes_succeed_after_kills(kill_results: dict[str, Any], name: str) -> None:
    """Whatever the kills left behind, the next write succeeds and the reader accepts it."""
    writer: Writer = kill_results[name]["writer"]
    writer.prepare()
    writer.write(1)
    writer.write(0)
    writer.check()


#: Writers of small, sensitive files sweep their stale temp files (fsutil sweep_stale).
SWEPT = ["keys generate", "keys passwd", "keys import", "config.edit_config", "PinStore.pin"]


@pytest.mark.parametrize("name", WRITER_NAMES)
def test_kills_leave_temp_files_behind(kill_results: dict[str, Any], name: str) -> None:
    """A SIGKILL between creating and renaming the temp file leaves that temp file behind."""
    assert kill_results[name]["temps"] != []


@pytest.mark.parametrize("name", SWEPT)
def test_stale_temp_files_are_removed_by_the_next_write(
    kill_results: dict[str, Any], name: str
) -> None:
    """Temp files a kill left behind, once stale, are removed by the next write of the file."""
    writer: Writer = kill_results[name]["writer"]
    assert stray_temps(writer.target) != []
    old = time.time() - fsutil.STALE_TEMP_AGE_S - 60
    for path in stray_temps(writer.target):
        os.utime(path, (old, old))
    writer.prepare()
    writer.write(1)  # PinStore.pin writes nothing when the key is already the pinned one
    writer.write(0)
    assert stray_temps(writer.target) == []


def test_temp_files_are_invisible_to_listings(kill_results: dict[str, Any]) -> None:
    """Left-over temp files never show up as keys or evidence bundles."""
    from omictl.keystore import list_keys

    home: Path = kill_results["home"]
    listing = list_keys(home / "keys")
    assert [key.name for key in listing.keys] == ["gen", "imp", "pw"]
    assert listing.problems == []
    bundles = Archive(home / "receipts").bundles()
    assert [path.name.rsplit("--", 1)[0] for path, _ in bundles] == [
        f"{h.SERVICE_ID}--{h.RECEIPT_ID}"
    ]


def test_delete_removes_stale_temp_files_of_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """keys delete also removes stale temp copies of the deleted key."""
    from omictl.keystore import delete_key

    keys = tmp_path / "keys"
    import_seed(keys, "gone", SEED, passphrases=source(PASSPHRASES[0]))
    stale = keys / ".gone.json.0123456789ab.tmp"
    stale.write_bytes((keys / "gone.json").read_bytes())
    old = time.time() - fsutil.STALE_TEMP_AGE_S - 1
    os.utime(stale, (old, old))
    delete_key(keys, "gone")
    assert sorted(p.name for p in keys.iterdir()) == []


# ---------------------------------------------------------------------------- the journal log
#
# The journal is not rewritten atomically but appended to (a record per step, fdatasync-ed):
# after a kill it must replay to the state of the last save that returned, or of the one in
# flight, and the next run must be able to go on appending.

JOURNAL_PHASES = ("unbind_sent", "revoked")


def _journal_state(journal: Any) -> bytes:
    """SHA-256 of everything a journal holds (fields, phase and the whole history)."""
    import json

    return hashlib.sha256(json.dumps(journal.to_json(), sort_keys=True).encode()).digest()


def _journal_child(state: Path, fd: int) -> None:
    """Hold the lock like a run, then save for ever: ``B`` + state digest, save, ``E``."""
    try:
        store = JournalStore(state)
        with store.locked(h.APP_ID, h.SERVICE_ID):
            journal = store.load(h.APP_ID, h.SERVICE_ID)
            i = len(journal.history)
            while True:
                phase = JOURNAL_PHASES[i % 2]
                journal.bundle_path = f"/bundles/{i}.json" if phase == "revoked" else None
                expected = copy.deepcopy(journal)
                expected.phase = phase
                expected.history.append({"phase": phase, "at": h.NOW + i})
                os.write(fd, b"B" + _journal_state(expected))
                store.save(journal, phase=phase, now=h.NOW + i)
                os.write(fd, b"E")
                i += 1
    except BaseException as exc:
        os.write(fd, b"X" + f"{type(exc).__name__}: {exc}".encode()[:400])
    finally:
        os._exit(0)


@pytest.fixture(scope="module")
def journal_kills(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """SIGKILL a process appending to one journal KILLS_PER_WRITER times."""
    state = tmp_path_factory.mktemp("crash-journal") / "state"
    store = JournalStore(state)
    with store.locked(h.APP_ID, h.SERVICE_ID):
        journal = store.load(h.APP_ID, h.SERVICE_ID)
        journal.termination_request = h.termination_request()
        store.save(journal, phase="termination_sent", now=h.NOW)
        journal.receipt = h.receipt()
        store.save(journal, phase="receipt_held", now=h.NOW)
    rng = random.Random(20261129)
    kills: list[Kill] = []
    for _ in range(KILLS_PER_WRITER):
        done = _journal_state(store.load(h.APP_ID, h.SERVICE_ID))
        reports = fork_and_kill(lambda fd: _journal_child(state, fd), rng)
        kills.append(_judge_journal(store, done, reports))
    h.count("crash journal log: kills", len(kills))
    h.count("crash journal log: kills mid-write", sum(k.mid_write for k in kills))
    h.count("crash journal log: corrupt or lost", sum(not k.ok for k in kills))
    h.count("crash journal log: writes started", sum(k.writes_started for k in kills))
    return {"store": store, "kills": kills}


def _judge_journal(store: JournalStore, before: bytes, raw: bytes) -> Kill:
    said = read_reports(before, raw)
    done, in_flight, started = said.done, said.in_flight, said.started
    if said.failure is not None:
        return Kill(started, False, False, said.failure)
    try:
        now = _journal_state(store.load(h.APP_ID, h.SERVICE_ID))
    except Exception as exc:
        return Kill(started, in_flight is not None, False, f"reader refused it: {exc!r}")
    allowed = {done} if in_flight is None else {done, in_flight}
    if now not in allowed:
        return Kill(started, in_flight is not None, False, "neither the old nor the new state")
    return Kill(started, in_flight is not None, True, "")


def test_journal_log_sigkill_leaves_old_or_new_state(journal_kills: dict[str, Any]) -> None:
    """After every SIGKILL the log replays to the last saved state or the one in flight."""
    kills: list[Kill] = journal_kills["kills"]
    assert [k.detail for k in kills if not k.ok] == []
    assert len(kills) == KILLS_PER_WRITER
    assert sum(k.writes_started for k in kills) > KILLS_PER_WRITER  # not vacuous
    assert any(k.mid_write for k in kills)


def test_journal_log_takes_appends_after_kills(journal_kills: dict[str, Any]) -> None:
    """Whatever the kills left, a later run appends and reads back what it wrote."""
    store: JournalStore = journal_kills["store"]
    with store.locked(h.APP_ID, h.SERVICE_ID):
        journal = store.load(h.APP_ID, h.SERVICE_ID)
        held = journal.receipt
        journal.bundle_path = "/bundles/final.json"
        store.save(journal, phase="done", now=h.NOW + 10**6)
    loaded = store.load(h.APP_ID, h.SERVICE_ID)
    assert loaded.phase == "done"
    assert loaded.bundle_path == "/bundles/final.json"
    assert loaded.receipt == held == h.receipt()
    assert loaded.termination_request == h.termination_request()
    assert loaded.history[-1] == {"phase": "done", "at": h.NOW + 10**6}
    folder = store.path_for(h.APP_ID, h.SERVICE_ID).parent
    # the log and nothing else: a SIGKILL never tears a write this small
    assert list(folder.iterdir()) == [store.path_for(h.APP_ID, h.SERVICE_ID)]


# ---------------------------------------------------------------------------- the sweep itself


def test_sweep_removes_only_stale_temps_of_the_target(tmp_path: Path) -> None:
    """remove_stale_temps deletes the target's stale temps, nothing fresh, foreign or odd."""
    target = tmp_path / "a.json"
    target.write_text("{}")
    now = time.time()
    names = {
        ".a.json.0123456789ab.tmp": now - fsutil.STALE_TEMP_AGE_S - 1,  # stale: removed
        ".a.json.ba9876543210.tmp": now - 5,  # a write in progress: kept
        ".b.json.0123456789ab.tmp": now - 10**6,  # another file's: kept
        ".a.json.0123456789AB.tmp": now - 10**6,  # not our spelling: kept
        ".a.json.x.0123456789ab.tmp": now - 10**6,  # of a file "a.json.x": kept
        "a.json.0123456789ab.tmp": now - 10**6,  # no leading dot: kept
    }
    for name, mtime in names.items():
        (tmp_path / name).write_text("x")
        os.utime(tmp_path / name, (mtime, mtime))
    folder = tmp_path / ".a.json.cccccccccccc.tmp"
    folder.mkdir()
    os.utime(folder, (now - 10**6, now - 10**6))
    link = tmp_path / ".a.json.dddddddddddd.tmp"
    link.symlink_to(target)
    assert fsutil.remove_stale_temps(target, now=now) == 1
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(
        [*(n for n in names if n != ".a.json.0123456789ab.tmp"), folder.name, link.name, "a.json"]
    )


def test_sweep_of_missing_folder_is_a_no_op(tmp_path: Path) -> None:
    """Sweeping next to a folder that does not exist removes nothing and raises nothing."""
    assert fsutil.remove_stale_temps(tmp_path / "nowhere" / "a.json") == 0
