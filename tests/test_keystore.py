"""The encrypted keystore: file format, KDF limits, permissions, passphrases, atomicity."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Any

import nacl.pwhash
import pytest

from omictl import keystore
from omictl.core.envelope import Signer, key_id
from omictl.errors import ExitCode, KeystoreError, UsageError
from omictl.keystore import (
    KDF_CEILING,
    MODERATE_LIMITS,
    KeyFile,
    PassphraseSource,
    change_passphrase,
    decrypt_seed,
    delete_key,
    export_key_bytes,
    generate_key,
    import_key_bytes,
    import_seed,
    list_keys,
    load_key,
    parse_key_bytes,
    parse_seed_text,
    read_key_file,
    seal_seed,
    unlock,
)

pytestmark = pytest.mark.usefixtures("fast_kdf", "clean_omictl_env")

SEED = bytes(range(32))
PASS = b"correct horse battery staple"


def source(passphrase: bytes = PASS) -> PassphraseSource:
    """A non-interactive source holding ``passphrase`` in OMICTL_PASSPHRASE."""
    return PassphraseSource(env={"OMICTL_PASSPHRASE": passphrase.decode()}, interactive=False)


def make_key(keys_dir: Path, name: str = "master", passphrase: bytes = PASS) -> KeyFile:
    """Store SEED as key ``name``, encrypted with ``passphrase``."""
    return import_seed(keys_dir, name, SEED, passphrases=source(passphrase))


def rewrite(path: Path, **changes: Any) -> None:
    """Edit members of a key file in place, keeping it 0600."""
    doc = json.loads(path.read_text())
    for member, value in changes.items():
        if isinstance(value, dict) and isinstance(doc.get(member), dict):
            doc[member].update(value)
        else:
            doc[member] = value
    path.write_text(json.dumps(doc))


# ---------------------------------------------------------------------------- KDF settings


def test_default_kdf_is_at_least_moderate() -> None:
    """Production key files use at least libsodium's MODERATE Argon2id limits."""
    assert MODERATE_LIMITS.opslimit >= nacl.pwhash.argon2id.OPSLIMIT_MODERATE
    assert MODERATE_LIMITS.memlimit >= nacl.pwhash.argon2id.MEMLIMIT_MODERATE
    # the fixture patched KDF_LIMITS; the module's source default is MODERATE
    source_text = Path(keystore.__file__).read_text()
    assert "\nKDF_LIMITS: KdfLimits = MODERATE_LIMITS\n" in source_text


def test_presets_match_libsodium() -> None:
    """The spelled-out presets equal nacl.pwhash.argon2id's constants."""
    a = nacl.pwhash.argon2id
    assert keystore.KdfLimits(a.OPSLIMIT_MIN, a.MEMLIMIT_MIN) == keystore.MIN_LIMITS
    assert (
        keystore.KdfLimits(a.OPSLIMIT_INTERACTIVE, a.MEMLIMIT_INTERACTIVE)
        == keystore.INTERACTIVE_LIMITS
    )
    assert keystore.KdfLimits(a.OPSLIMIT_MODERATE, a.MEMLIMIT_MODERATE) == keystore.MODERATE_LIMITS
    assert (
        keystore.KdfLimits(a.OPSLIMIT_SENSITIVE, a.MEMLIMIT_SENSITIVE) == keystore.SENSITIVE_LIMITS
    )
    assert a.SALTBYTES == keystore.SALT_BYTES


def test_ceiling_is_at_most_sensitive() -> None:
    """A key file may ask for at most 4 passes over 1 GiB."""
    assert KDF_CEILING.opslimit <= nacl.pwhash.argon2id.OPSLIMIT_SENSITIVE
    assert KDF_CEILING.memlimit <= 1024**3


def test_key_id_matches_envelope_core() -> None:
    """compute_key_id (no libsodium) equals the envelope core's key_id."""
    pub = Signer(SEED).public_key
    assert keystore.compute_key_id(pub) == key_id(pub)


# ---------------------------------------------------------------------------- seal / open


def test_seal_then_decrypt_round_trip() -> None:
    """A sealed seed decrypts with the same passphrase and derives the same public key."""
    key = seal_seed(SEED, PASS, name="master")
    assert key.public_key == Signer(SEED).public_key
    assert decrypt_seed(key, PASS) == SEED


def test_wrong_passphrase_is_keystore_error() -> None:
    """A wrong passphrase raises KeystoreError (exit 3, code wrong_passphrase)."""
    key = seal_seed(SEED, PASS, name="master")
    with pytest.raises(KeystoreError) as err:
        decrypt_seed(key, b"wrong")
    assert err.value.exit_code == ExitCode.KEY
    assert err.value.code == "wrong_passphrase"


def test_swapped_public_key_fails_loudly(tmp_path: Path) -> None:
    """A file whose public key was replaced by another key's does not unlock."""
    make_key(tmp_path)
    other = Signer(bytes(32)).public_key
    rewrite(tmp_path / "master.json", public_key=other.hex(), key_id=key_id(other))
    key = load_key(tmp_path, "master")
    with pytest.raises(KeystoreError) as err:
        decrypt_seed(key, PASS)
    assert err.value.code == "inconsistent_key_file"


def test_swapped_key_id_alone_is_corrupt(tmp_path: Path) -> None:
    """A key_id that does not match the public key is refused on read."""
    make_key(tmp_path)
    rewrite(tmp_path / "master.json", key_id="0" * 16)
    with pytest.raises(KeystoreError, match="key_id does not match"):
        load_key(tmp_path, "master")


def test_key_file_repr_hides_secrets() -> None:
    """Neither the ciphertext nor the seed appears in a KeyFile's repr."""
    sealed = seal_seed(SEED, PASS, name="master")
    plain = keystore.plain_key(SEED, name="plain")
    assert sealed.ciphertext is not None
    assert sealed.ciphertext.hex() not in repr(sealed)
    assert SEED.hex() not in repr(plain)
    assert "seed=" not in repr(plain)


# ---------------------------------------------------------------------------- files on disk


def test_generated_file_has_no_seed_and_private_modes(tmp_path: Path) -> None:
    """An encrypted key file holds no seed bytes (hex or base64); file 0600, folder 0700."""
    keys_dir = tmp_path / "keys"
    key = generate_key(keys_dir, "master", passphrases=source())
    signer = unlock(load_key(keys_dir, "master"), source())
    seed = signer.seed_bytes()
    raw = (keys_dir / "master.json").read_bytes()
    for encoded in (
        seed.hex(),
        seed.hex().upper(),
        base64.b64encode(seed).decode(),
        base64.urlsafe_b64encode(seed).decode().rstrip("="),
    ):
        assert encoded.encode() not in raw
    assert seed not in raw
    assert stat.S_IMODE((keys_dir / "master.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    assert signer.public_key == key.public_key
    doc = json.loads(raw)
    assert doc["encrypted"] is True and "seed" not in doc
    assert list(keys_dir.iterdir()) == [keys_dir / "master.json"]


def test_key_file_document_shape(tmp_path: Path) -> None:
    """The file has the members docs/keystore.md describes."""
    make_key(tmp_path)
    doc = json.loads((tmp_path / "master.json").read_text())
    assert set(doc) == {
        "format",
        "format_version",
        "name",
        "kind",
        "created_at",
        "public_key",
        "key_id",
        "encrypted",
        "kdf",
        "ciphertext",
    }
    assert doc["format"] == "omictl-key" and doc["format_version"] == 1
    assert doc["kdf"]["name"] == "argon2id" and len(doc["kdf"]["salt"]) == 32
    assert len(doc["ciphertext"]) == 2 * (24 + 32 + 16)
    assert doc["created_at"].endswith("Z")


def test_generate_refuses_existing_key_before_asking(tmp_path: Path) -> None:
    """generate without force refuses an existing name, without asking for a passphrase."""
    make_key(tmp_path)
    before = (tmp_path / "master.json").read_bytes()
    no_source = PassphraseSource(env={}, interactive=False)
    with pytest.raises(KeystoreError) as err:
        generate_key(tmp_path, "master", passphrases=no_source)
    assert err.value.code == "key_exists"
    assert (tmp_path / "master.json").read_bytes() == before


def test_generate_force_replaces(tmp_path: Path) -> None:
    """generate with force replaces the key with a new one."""
    old = make_key(tmp_path)
    new = generate_key(tmp_path, "master", passphrases=source(), force=True)
    assert new.public_key != old.public_key
    assert load_key(tmp_path, "master").public_key == new.public_key


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "", "x" * 65, "a b", "-a"])
def test_bad_key_names_are_usage_errors(tmp_path: Path, name: str) -> None:
    """Names outside [A-Za-z0-9][A-Za-z0-9_.-]{0,63} never reach the disk."""
    with pytest.raises(UsageError):
        generate_key(tmp_path, name, passphrases=source())
    assert list(tmp_path.iterdir()) == []


def test_unsafe_permissions_are_refused(tmp_path: Path) -> None:
    """A group/other-readable key file is refused with a chmod hint."""
    make_key(tmp_path)
    path = tmp_path / "master.json"
    path.chmod(0o640)
    with pytest.raises(KeystoreError) as err:
        load_key(tmp_path, "master")
    assert err.value.code == "unsafe_permissions"
    assert err.value.hint == f"chmod 600 {path}"


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702])
def test_a_keys_folder_others_may_write_is_refused(tmp_path: Path, mode: int) -> None:
    """Like ssh with ~/.ssh: a keys folder group or others may write is refused for
    reading, listing and writing keys (exit 3, chmod 700 in the hint); one they may only
    read is fine (each key file is 0600)."""
    keys_dir = tmp_path / "keys"
    make_key(keys_dir)
    keys_dir.chmod(mode)
    calls = (
        lambda: load_key(keys_dir, "master"),
        lambda: list_keys(keys_dir),
        lambda: generate_key(keys_dir, "other", passphrases=source()),
    )
    for call in calls:
        with pytest.raises(KeystoreError) as err:
            call()
        assert err.value.code == "unsafe_permissions" and err.value.exit_code == ExitCode.KEY
        assert err.value.hint == f"chmod 700 {keys_dir}"
    assert not (keys_dir / "other.json").exists()
    keys_dir.chmod(0o755)
    assert load_key(keys_dir, "master").name == "master"


def test_unknown_key(tmp_path: Path) -> None:
    """An unknown name is KeystoreError code unknown_key."""
    with pytest.raises(KeystoreError) as err:
        load_key(tmp_path, "nope")
    assert err.value.code == "unknown_key"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not JSON"),
        (b'{"format": "omictl-key", "format_ver', "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"format": "other"}', "format must be"),
        (b"\xff\xfe", "not JSON"),
    ],
)
def test_corrupt_files_are_refused(tmp_path: Path, content: bytes, message: str) -> None:
    """Truncated, non-JSON or foreign files raise KeystoreError naming the problem."""
    path = tmp_path / "master.json"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(KeystoreError, match=message) as err:
        load_key(tmp_path, "master")
    assert err.value.exit_code == ExitCode.KEY


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format_version": 2}, "format_version"),
        ({"format_version": True}, "format_version"),
        ({"kind": "admin"}, "kind"),
        ({"name": "../x"}, "name"),
        ({"created_at": "yesterday"}, "created_at"),
        ({"public_key": "zz" * 32}, "public_key"),
        ({"encrypted": "yes"}, "encrypted"),
        ({"ciphertext": "00" * 10}, "ciphertext"),
        ({"kdf": {"name": "scrypt"}}, "kdf.name"),
        ({"kdf": {"salt": "00"}}, "salt"),
        ({"kdf": {"opslimit": "3"}}, "opslimit"),
        ({"seed": "00" * 32}, "must not hold a seed"),
    ],
)
def test_malformed_members_are_refused(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    """Each malformed member is named in the error."""
    make_key(tmp_path)
    rewrite(tmp_path / "master.json", **changes)
    with pytest.raises(KeystoreError, match=message):
        load_key(tmp_path, "master")


def test_duplicate_members_are_refused(tmp_path: Path) -> None:
    """A key file with a duplicated member is not accepted."""
    make_key(tmp_path)
    path = tmp_path / "master.json"
    text = path.read_text().replace('"encrypted": true', '"encrypted": true, "encrypted": false')
    path.write_text(text)
    with pytest.raises(KeystoreError, match="not JSON"):
        load_key(tmp_path, "master")


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    """A key file larger than 64 KiB is refused without parsing it."""
    make_key(tmp_path)
    path = tmp_path / "master.json"
    path.write_bytes(path.read_bytes() + b" " * (64 * 1024))
    with pytest.raises(KeystoreError, match="larger than"):
        load_key(tmp_path, "master")


@pytest.mark.parametrize(
    "kdf",
    [
        {"opslimit": 5},
        {"opslimit": 10**9},
        {"opslimit": 0},
        {"memlimit": 1024**3 + 1},
        {"memlimit": 2**42},
        {"memlimit": 4096},
    ],
)
def test_hostile_kdf_params_refused_before_kdf_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kdf: dict[str, int]
) -> None:
    """KDF limits above the ceiling or below the floor are refused; Argon2id never runs."""
    make_key(tmp_path)
    rewrite(tmp_path / "master.json", kdf=kdf)

    def boom(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("argon2id must not run for hostile parameters")

    monkeypatch.setattr(nacl.pwhash.argon2id, "kdf", boom)
    with pytest.raises(KeystoreError) as err:
        unlock(read_key_file(tmp_path / "master.json"), source())
    assert err.value.code == "hostile_kdf"


def test_list_keys_sorted_and_reports_problems(tmp_path: Path) -> None:
    """list_keys returns valid keys by name and one problem line per bad file."""
    make_key(tmp_path, "zeta")
    make_key(tmp_path, "alpha")
    (tmp_path / "broken.json").write_text("{")
    (tmp_path / "notes.txt").write_text("ignored")
    listing = list_keys(tmp_path)
    assert [k.name for k in listing.keys] == ["alpha", "zeta"]
    assert len(listing.problems) == 1 and "broken.json" in listing.problems[0][1]
    assert listing.problems[0][0].name == "broken.json"


def test_list_keys_missing_folder_is_empty(tmp_path: Path) -> None:
    """A keystore folder that does not exist yet lists nothing and is not created."""
    listing = list_keys(tmp_path / "keys")
    assert listing.keys == [] and listing.problems == []
    assert not (tmp_path / "keys").exists()


def test_export_then_import_round_trip(tmp_path: Path) -> None:
    """An exported key file imports under another name and unlocks with its passphrase."""
    make_key(tmp_path / "a")
    raw = export_key_bytes(tmp_path / "a", "master")
    key = import_key_bytes(tmp_path / "b", "restored", raw)
    assert key.name == "restored"
    signer = unlock(load_key(tmp_path / "b", "restored"), source())
    assert signer.seed_bytes() == SEED


def test_import_inconsistent_unencrypted_file_refused(tmp_path: Path) -> None:
    """An unencrypted key file whose seed does not derive its public key is refused."""
    doc = keystore.plain_key(SEED, name="x").to_json()
    doc["seed"] = "11" * 32
    with pytest.raises(KeystoreError) as err:
        import_key_bytes(tmp_path, "x", json.dumps(doc).encode())
    assert err.value.code == "inconsistent_key_file"
    assert not (tmp_path / "x.json").exists()


def test_delete_key(tmp_path: Path) -> None:
    """delete_key removes the file and reports the key; an unknown name raises."""
    make_key(tmp_path)
    deleted = delete_key(tmp_path, "master")
    assert deleted is not None and deleted.public_key == Signer(SEED).public_key
    assert not (tmp_path / "master.json").exists()
    with pytest.raises(KeystoreError):
        delete_key(tmp_path, "master")


def test_delete_damaged_key(tmp_path: Path) -> None:
    """A damaged key file can still be deleted."""
    (tmp_path / "bad.json").write_text("{")
    assert delete_key(tmp_path, "bad") is None
    assert not (tmp_path / "bad.json").exists()


# ---------------------------------------------------------------------------- passwd


def test_change_passphrase(tmp_path: Path) -> None:
    """After passwd the new passphrase unlocks the key and the old one does not."""
    old_key = make_key(tmp_path)
    change_passphrase(tmp_path, "master", old=source(), new=source(b"new secret"))
    key = load_key(tmp_path, "master")
    assert key.created_at == old_key.created_at
    assert unlock(key, source(b"new secret")).seed_bytes() == SEED
    with pytest.raises(KeystoreError):
        unlock(key, source())


def test_change_passphrase_wrong_old_changes_nothing(tmp_path: Path) -> None:
    """A wrong old passphrase fails before the new one is asked, and the file is unchanged."""
    make_key(tmp_path)
    before = (tmp_path / "master.json").read_bytes()
    no_new = PassphraseSource(env={}, interactive=False)
    with pytest.raises(KeystoreError) as err:
        change_passphrase(tmp_path, "master", old=source(b"nope"), new=no_new)
    assert err.value.code == "wrong_passphrase"
    assert (tmp_path / "master.json").read_bytes() == before


@pytest.mark.parametrize("fault", ["replace", "fsync", "interrupt"])
def test_passwd_interrupted_leaves_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    """A failure between writing and renaming leaves the old file, loadable with the old
    passphrase, and no temporary file."""
    make_key(tmp_path)
    before = (tmp_path / "master.json").read_bytes()

    def fail(*args: object, **kwargs: object) -> None:
        if fault == "interrupt":
            raise KeyboardInterrupt
        raise OSError(5, "Input/output error")

    target = "replace" if fault in ("replace", "interrupt") else "fsync"
    monkeypatch.setattr(os, target, fail)
    expected: type[BaseException] = KeyboardInterrupt if fault == "interrupt" else KeystoreError
    with pytest.raises(expected):
        change_passphrase(tmp_path, "master", old=source(), new=source(b"new secret"))
    monkeypatch.undo()
    assert (tmp_path / "master.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["master.json"]
    assert unlock(load_key(tmp_path, "master"), source()).seed_bytes() == SEED


def test_passwd_completed_rename_leaves_new_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after the rename (at the folder fsync) leaves the complete new file."""
    make_key(tmp_path)
    import omictl.fsutil

    def crash(path: Path) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(omictl.fsutil, "fsync_dir", crash)
    with pytest.raises(KeyboardInterrupt):
        change_passphrase(tmp_path, "master", old=source(), new=source(b"new secret"))
    monkeypatch.undo()
    assert unlock(load_key(tmp_path, "master"), source(b"new secret")).seed_bytes() == SEED


# ---------------------------------------------------------------------------- passphrases


def test_passphrase_file_strips_one_newline(tmp_path: Path) -> None:
    """--passphrase-file: the file's bytes without one trailing newline."""
    path = tmp_path / "pass"
    path.write_bytes(b"s3cret \n\n")
    assert PassphraseSource(passphrase_file=path, env={}).get("p: ") == b"s3cret \n"
    path.write_bytes(b"s3cret\r\n")
    assert PassphraseSource(passphrase_file=path, env={}).get("p: ") == b"s3cret"


def test_passphrase_file_beats_environment(tmp_path: Path) -> None:
    """The file wins over OMICTL_PASSPHRASE."""
    path = tmp_path / "pass"
    path.write_bytes(b"from-file")
    got = PassphraseSource(passphrase_file=path, env={"OMICTL_PASSPHRASE": "from-env"}).get("p")
    assert got == b"from-file"


@pytest.mark.parametrize("content", [b"", b"\n"])
def test_empty_passphrase_file_is_refused(tmp_path: Path, content: bytes) -> None:
    """An empty passphrase file is a passphrase problem (exit 3), as an empty typed one."""
    path = tmp_path / "pass"
    path.write_bytes(content)
    with pytest.raises(KeystoreError, match="empty") as info:
        PassphraseSource(passphrase_file=path, env={}).get("p: ")
    assert info.value.exit_code == ExitCode.KEY


def test_missing_passphrase_file_is_refused(tmp_path: Path) -> None:
    """A missing passphrase file is a usage error naming it."""
    with pytest.raises(UsageError, match="cannot read passphrase file"):
        PassphraseSource(passphrase_file=tmp_path / "nope", env={}).get("p: ")


def test_env_passphrase() -> None:
    """OMICTL_PASSPHRASE is used when no file is given."""
    assert source(b"abc").get("p: ") == b"abc"


def test_set_but_empty_env_is_refused() -> None:
    """OMICTL_PASSPHRASE set to '' is refused, not treated as unset."""
    src = PassphraseSource(env={"OMICTL_PASSPHRASE": ""}, interactive=True)
    with pytest.raises(KeystoreError, match="set but empty") as info:
        src.get("p: ")
    assert info.value.exit_code == ExitCode.KEY  # as no passphrase at all (CLI.md: 3)


def test_no_source_and_no_tty_names_the_sources() -> None:
    """Without any source and without a terminal: an error naming all sources, no hang."""
    with pytest.raises(KeystoreError) as err:
        PassphraseSource(env={}, interactive=False).get("p: ")
    assert "--passphrase-file" in err.value.message
    assert "OMICTL_PASSPHRASE" in err.value.message
    assert "terminal" in err.value.message


def test_interactive_prompt_with_confirmation(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal the passphrase is typed twice when confirming."""
    typed = iter(["pw", "pw"])
    prompts: list[str] = []

    def fake(prompt: str = "") -> str:
        prompts.append(prompt)
        return next(typed)

    monkeypatch.setattr("getpass.getpass", fake)
    assert PassphraseSource(env={}, interactive=True).get("new: ", confirm=True) == b"pw"
    assert prompts == ["new: ", "repeat the passphrase: "]


def test_interactive_mismatch_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two different typed passphrases are refused."""
    typed = iter(["one", "two"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(typed))
    with pytest.raises(KeystoreError, match="do not match"):
        PassphraseSource(env={}, interactive=True).get("new: ", confirm=True)


def test_interactive_empty_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty typed passphrase is refused."""
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "")
    with pytest.raises(KeystoreError, match="empty"):
        PassphraseSource(env={}, interactive=True).get("p: ")


# ---------------------------------------------------------------------------- seeds


@pytest.mark.parametrize(
    "text",
    [
        SEED.hex(),
        SEED.hex().upper(),
        f"  {SEED.hex()}\n",
        base64.b64encode(SEED).decode(),
        base64.urlsafe_b64encode(SEED).decode().rstrip("="),
        base64.b64encode(SEED),
    ],
)
def test_parse_seed_text_accepts_hex_and_base64(text: str | bytes) -> None:
    """Seeds are accepted as 64 hex chars or base64 (standard or URL-safe, padding optional)."""
    assert parse_seed_text(text, what="seed") == SEED


@pytest.mark.parametrize(
    "text",
    ["", "00" * 31, "00" * 33, "zz" * 32, base64.b64encode(bytes(31)).decode(), "é" * 64],
)
def test_parse_seed_text_rejects_and_never_echoes(text: str) -> None:
    """A malformed seed is a usage error that does not repeat the input."""
    with pytest.raises(UsageError) as err:
        parse_seed_text(text, what="the seed")
    if text:
        assert text not in err.value.message
        assert text not in (err.value.hint or "")


def test_parse_key_bytes_names_source() -> None:
    """Errors from parse_key_bytes name where the bytes came from."""
    with pytest.raises(KeystoreError, match="the variable X"):
        parse_key_bytes(b"{}", source="the variable X")


def test_a_key_sealed_below_omictls_cost_is_warned_about(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key file sealed at libsodium's MIN cost (another tool, a test home) is accepted,
    but every unlock says so and names the fix; one at omictl's cost says nothing."""
    from omictl.keystore import weak_kdf

    make_key(tmp_path / "a")  # sealed at MIN: the fast_kdf fixture lowered KDF_LIMITS
    raw = export_key_bytes(tmp_path / "a", "master")
    monkeypatch.setattr(keystore, "KDF_LIMITS", keystore.INTERACTIVE_LIMITS)  # "production"
    key = import_key_bytes(tmp_path / "b", "restored", raw)
    warning = weak_kdf(key)
    assert warning is not None and "omictl keys passwd restored" in warning
    warned: list[str] = []
    unlock(load_key(tmp_path / "b", "restored"), source(), warn=warned.append)
    assert warned == [warning]
    monkeypatch.setattr(keystore, "KDF_LIMITS", keystore.MIN_LIMITS)
    assert weak_kdf(key) is None
