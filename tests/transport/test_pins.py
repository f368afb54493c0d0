"""PinStore: trust on first use, refusal to re-pin silently, strict file, atomic 0600."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from omictl.core.envelope import key_id
from omictl.errors import ExitCode, UsageError, VerificationError
from omictl.transport.pins import PinStore, pin_explicit
from tests.transport.helpers import OTHER_SIGNER, REGISTRY, REGISTRY_SIGNER

KEY = REGISTRY_SIGNER.public_key
OTHER = OTHER_SIGNER.public_key


@pytest.fixture
def pins(tmp_path: Path) -> PinStore:
    """A store in a fresh folder, pinned_at fixed."""
    return PinStore(tmp_path / "home" / "known_registries.json", now=lambda: 1705412600.0)


def test_missing_file_is_empty(pins: PinStore) -> None:
    """No file means no pins, and nothing is created by reading."""
    assert pins.get(REGISTRY) is None
    assert pins.all() == {}
    assert not pins.path.exists()


def test_pin_then_get(pins: PinStore) -> None:
    """A pinned key is returned for the same URL."""
    pins.pin(REGISTRY, KEY, name="Example")
    assert pins.get(REGISTRY) == KEY


def test_pin_file_content(pins: PinStore) -> None:
    """The file holds version 1 and the entry with key id, time and name."""
    pins.pin(REGISTRY, KEY, name="Example")
    assert json.loads(pins.path.read_text()) == {
        "version": 1,
        "registries": {
            REGISTRY: {
                "public_key": KEY.hex(),
                "key_id": key_id(KEY),
                "pinned_at": "2024-01-16T13:43:20Z",
                "name": "Example",
            }
        },
    }


def test_pin_file_mode_0600(pins: PinStore) -> None:
    """The pin file is created with mode 0600 and no temporary file is left."""
    pins.pin(REGISTRY, KEY)
    assert stat.S_IMODE(pins.path.stat().st_mode) == 0o600
    assert sorted(os.listdir(pins.path.parent)) == [
        "known_registries.json",
        "known_registries.json.lock",
    ]


def test_pin_write_is_atomic(pins: PinStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed write leaves the old file intact and no temporary file."""
    pins.pin(REGISTRY, KEY)
    before = pins.path.read_bytes()

    def fail(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(UsageError, match="No space left on device"):
        pins.pin("https://other.example", OTHER)
    assert pins.path.read_bytes() == before
    assert sorted(os.listdir(pins.path.parent)) == [
        "known_registries.json",
        "known_registries.json.lock",
    ]


def test_url_normalized(pins: PinStore) -> None:
    """Case, default port and trailing slash do not make a second pin."""
    pins.pin("HTTPS://Registry.Example:443/", KEY)
    assert pins.get("https://registry.example") == KEY
    assert list(pins.all()) == [REGISTRY]


def test_same_key_again_is_noop(pins: PinStore) -> None:
    """Pinning the pinned key changes nothing (pinned_at kept)."""
    pins.pin(REGISTRY, KEY)
    before = pins.path.read_bytes()
    PinStore(pins.path, now=lambda: 1.0).pin(REGISTRY, KEY)
    assert pins.path.read_bytes() == before


def test_changed_key_refused(pins: PinStore) -> None:
    """Another key for a pinned URL is a verification failure (exit 5) with a re-pin hint."""
    pins.pin(REGISTRY, KEY)
    with pytest.raises(VerificationError) as info:
        pins.pin(REGISTRY, OTHER)
    assert info.value.exit_code == ExitCode.VERIFICATION
    assert info.value.code == "registry_key_mismatch"
    assert info.value.hint is not None
    assert f"omictl registry pin {REGISTRY} --public-key HEX" in info.value.hint
    assert pins.get(REGISTRY) == KEY


def test_replace_repins(pins: PinStore) -> None:
    """replace=True swaps the key."""
    pins.pin(REGISTRY, KEY)
    pins.pin(REGISTRY, OTHER, replace=True)
    assert pins.get(REGISTRY) == OTHER


def test_forget(pins: PinStore) -> None:
    """forget removes a pin and says whether there was one."""
    pins.pin(REGISTRY, KEY)
    assert pins.forget(REGISTRY + "/") is True
    assert pins.get(REGISTRY) is None
    assert pins.forget(REGISTRY) is False


def test_pin_explicit_reports_old_key(pins: PinStore) -> None:
    """pin_explicit replaces the pin and reports the old and new keys."""
    pins.pin(REGISTRY, KEY)
    change = pin_explicit(pins, REGISTRY, OTHER.hex().upper())
    assert (change.old_key, change.new_key, change.changed) == (KEY, OTHER, True)
    assert change.to_json()["previous_key_id"] == key_id(KEY)


def test_pin_explicit_bad_hex(pins: PinStore) -> None:
    """A malformed --public-key is a usage error naming the option."""
    with pytest.raises(UsageError, match="--public-key must be 64 hex characters"):
        pin_explicit(pins, REGISTRY, "abcd")


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"{not json", "is not valid JSON"),
        (b"[]", "expected an object with version 1"),
        (b'{"version": 2, "registries": {}}', "expected an object with version 1"),
        (b'{"version": 1, "registries": []}', "'registries' must be an object"),
        (b'{"version": 1, "registries": {}, "version": 1}', "duplicate member"),
        (b'{"version": 1, "registries": {"ftp://a.example": {}}}', "not an https:// URL"),
        (b'{"version": 1, "registries": {"https://a.example": {"x": 1}}}', "must have"),
    ],
)
def test_corrupt_file_is_clear_error(pins: PinStore, content: bytes, why: str) -> None:
    """A corrupt pin file is a usage error (exit 2) naming the file, never an empty store."""
    pins.path.parent.mkdir(parents=True)
    pins.path.write_bytes(content)
    with pytest.raises(UsageError, match=why) as info:
        pins.get(REGISTRY)
    assert info.value.code == "pin_file_corrupt"
    assert info.value.exit_code == ExitCode.USAGE
    assert str(pins.path) in info.value.message


def test_key_id_mismatch_is_corrupt(pins: PinStore) -> None:
    """An entry whose key_id does not match its key is refused."""
    pins.pin(REGISTRY, KEY)
    doc = json.loads(pins.path.read_text())
    doc["registries"][REGISTRY]["key_id"] = "0" * 16
    pins.path.write_text(json.dumps(doc))
    with pytest.raises(UsageError, match="key_id does not match public_key"):
        pins.all()


def test_corrupt_file_not_overwritten_by_pin(pins: PinStore) -> None:
    """Pinning refuses to overwrite a corrupt file (other pins could be lost)."""
    pins.path.parent.mkdir(parents=True)
    pins.path.write_bytes(b"garbage")
    with pytest.raises(UsageError):
        pins.pin(REGISTRY, KEY)
    assert pins.path.read_bytes() == b"garbage"


def test_replace_keeps_name(pins: PinStore) -> None:
    """An explicit re-pin without a name keeps the registry name learnt before."""
    pins.pin(REGISTRY, KEY, name="Example")
    pins.pin(REGISTRY, OTHER, replace=True)
    assert pins.all()[REGISTRY]["name"] == "Example"


def test_concurrent_first_pins_of_different_registries_all_survive(tmp_path: Path) -> None:
    """Threads (each with its own PinStore) pinning different registries lose no pin."""
    import threading

    path = tmp_path / "known_registries.json"
    urls = [f"https://reg{i}.example" for i in range(16)]
    keys = {url: bytes([i]) * 32 for i, url in enumerate(urls)}
    threads = [
        threading.Thread(target=lambda u=url: PinStore(path).pin(u, keys[u])) for url in urls
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store = PinStore(path)
    assert {url: store.get(url) for url in urls} == keys


def _entry(key: bytes) -> dict[str, str]:
    return {"public_key": key.hex(), "key_id": key_id(key), "pinned_at": "t", "name": "n"}


def _write_pins(pins: PinStore, registries: dict[str, dict[str, str]]) -> None:
    pins.path.parent.mkdir(parents=True)
    pins.path.write_text(json.dumps({"version": 1, "registries": registries}))


def test_pins_written_in_an_older_normal_form_still_hold(pins: PinStore) -> None:
    """An upgrade must not make the pin file unreadable (every run exit 2, and the hint to
    remove it would send every registry back to trust on first use), nor leave a pin under
    a key no URL can match: a trailing-dot host and dot segments are read as httpx sent
    them (the trailing dot dropped, the segments resolved)."""
    host = REGISTRY.split("://", 1)[1]
    _write_pins(
        pins,
        {f"https://{host}.": _entry(KEY), "https://old.example/a/../b/./": _entry(KEY)},
    )
    assert pins.get(REGISTRY) == KEY
    assert pins.get("https://old.example/b") == KEY


def test_two_spellings_with_two_keys_are_settled_by_the_user_not_by_omictl(
    pins: PinStore,
) -> None:
    """Neither key is chosen silently (PROTOCOL.md section 3): that registry's lookups say
    which spellings pin which keys, other registries work, both entries stay on disk, and
    an explicit pin (or forget) settles it."""
    host = REGISTRY.split("://", 1)[1]
    other = OTHER_SIGNER.public_key
    _write_pins(
        pins,
        {
            f"https://{host}.": _entry(other),
            REGISTRY: _entry(KEY),
            "https://elsewhere.example": _entry(KEY),
        },
    )
    with pytest.raises(UsageError, match="twice with different keys") as info:
        pins.get(REGISTRY)
    assert info.value.code == "pin_conflict" and "--public-key" in (info.value.hint or "")
    with pytest.raises(UsageError, match="twice"):
        pins.pin(REGISTRY, KEY)  # a first-use pin cannot pick one either
    pins.pin("https://third.example", KEY)  # another registry's pin keeps both entries
    assert set(json.loads(pins.path.read_text())["registries"]) == {
        f"https://{host}.",
        REGISTRY,
        "https://elsewhere.example",
        "https://third.example",
    }
    assert pins.get("https://elsewhere.example") == KEY
    pin_explicit(pins, REGISTRY, other.hex())  # the user's choice, out of band
    assert pins.get(REGISTRY) == other
    assert f"https://{host}." not in json.loads(pins.path.read_text())["registries"]


def test_settling_a_conflict_reports_both_keys_and_keeps_the_registry_name(
    pins: PinStore,
) -> None:
    """The explicit pin that settles two spellings' keys says which keys it replaced (not
    "no previous key") and keeps the name the registry gave."""
    host = REGISTRY.split("://", 1)[1]
    other = OTHER_SIGNER.public_key
    entry = _entry(other)
    entry["name"] = "Example Registry"
    unnamed = _entry(KEY)
    unnamed["name"] = ""  # this spelling's entry has no name: the other's is kept
    _write_pins(pins, {f"https://{host}.": entry, REGISTRY: unnamed})
    conflicting = pins.all()[REGISTRY]["conflicting spellings"].values()
    assert sorted(e["public_key"] for e in conflicting) == sorted([KEY.hex(), other.hex()])
    change = pin_explicit(pins, REGISTRY, other.hex())
    doc = change.to_json()
    assert doc["previous_key_id"] is None  # no single previous key
    assert sorted(doc["previous_key_ids"]) == sorted([key_id(KEY), key_id(other)])
    assert doc["changed"] and doc["name"] == "Example Registry"
    assert pins.entry(REGISTRY)["name"] == "Example Registry"  # type: ignore[index]
    assert pin_explicit(pins, REGISTRY, other.hex()).to_json()["previous_key_ids"] == [
        key_id(other)
    ]
