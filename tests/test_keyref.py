"""Key references: NAME, file:PATH and env:VAR, with and without passphrases."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from omictl.core.envelope import Signer
from omictl.errors import ExitCode, KeystoreError, UsageError
from omictl.keyref import default_key_ref, describe_key_ref, load_public_key, load_signer
from omictl.keystore import PassphraseSource, import_seed, plain_key, seal_seed

pytestmark = pytest.mark.usefixtures("fast_kdf", "clean_omictl_env")

SEED = bytes(range(1, 33))
PUB = Signer(SEED).public_key
PASS = "pass phrase"


def good() -> PassphraseSource:
    """A source holding PASS."""
    return PassphraseSource(env={"OMICTL_PASSPHRASE": PASS}, interactive=False)


def none() -> PassphraseSource:
    """A source that has no passphrase at all (and fails if asked)."""
    return PassphraseSource(env={}, interactive=False)


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    """A keystore holding SEED as 'master' (encrypted) and as 'plain' (unencrypted)."""
    keys = tmp_path / "keys"
    import_seed(keys, "master", SEED, passphrases=good())
    import_seed(keys, "plain", SEED, passphrases=None)
    return keys


def test_name_ref_loads_and_unlocks(keys_dir: Path) -> None:
    """NAME unlocks the keystore key with the passphrase."""
    signer = load_signer("master", keys_dir=keys_dir, passphrases=good())
    assert signer.public_key == PUB and signer.name == "master"


def test_name_ref_wrong_passphrase(keys_dir: Path) -> None:
    """A wrong passphrase is exit 3."""
    bad = PassphraseSource(env={"OMICTL_PASSPHRASE": "nope"}, interactive=False)
    with pytest.raises(KeystoreError) as err:
        load_signer("master", keys_dir=keys_dir, passphrases=bad)
    assert err.value.exit_code == ExitCode.KEY


def test_unknown_name(keys_dir: Path) -> None:
    """An unknown key name is KeystoreError unknown_key."""
    with pytest.raises(KeystoreError) as err:
        load_signer("ghost", keys_dir=keys_dir, passphrases=good())
    assert err.value.code == "unknown_key"


@pytest.mark.parametrize("ref", ["", "../etc/passwd", "a/b", "file:", "env:"])
def test_malformed_refs_are_usage_errors(keys_dir: Path, ref: str) -> None:
    """Malformed references are usage errors (exit 2)."""
    with pytest.raises(UsageError):
        load_signer(ref, keys_dir=keys_dir, passphrases=good(), env={})


def test_unencrypted_key_warns_every_use(keys_dir: Path) -> None:
    """An unencrypted key warns each time it is loaded, and needs no passphrase."""
    warnings: list[str] = []
    for _ in range(2):
        signer = load_signer("plain", keys_dir=keys_dir, passphrases=none(), warn=warnings.append)
        assert signer.public_key == PUB
    assert warnings == ["key plain is stored unencrypted"] * 2


def test_file_ref(keys_dir: Path) -> None:
    """file:PATH loads an omictl key file from anywhere."""
    path = keys_dir / "master.json"
    signer = load_signer(f"file:{path}", keys_dir=Path("/nonexistent"), passphrases=good())
    assert signer.public_key == PUB


def test_file_ref_missing(tmp_path: Path) -> None:
    """file:PATH that does not exist is exit 3."""
    with pytest.raises(KeystoreError, match="does not exist"):
        load_signer(f"file:{tmp_path / 'x.json'}", keys_dir=tmp_path, passphrases=good())


def test_file_ref_unsafe_permissions(keys_dir: Path) -> None:
    """file:PATH is held to the same 0600 rule as the keystore."""
    path = keys_dir / "master.json"
    path.chmod(0o644)
    with pytest.raises(KeystoreError) as err:
        load_signer(f"file:{path}", keys_dir=keys_dir, passphrases=good())
    assert err.value.code == "unsafe_permissions"


@pytest.mark.parametrize(
    "value",
    [
        SEED.hex(),
        base64.b64encode(SEED).decode(),
        base64.urlsafe_b64encode(SEED).decode().rstrip("="),
        f"\n{SEED.hex()}\n",
    ],
)
def test_env_ref_raw_seed(value: str) -> None:
    """env:VAR holding a raw seed (hex or base64) signs without a passphrase or warning."""
    warnings: list[str] = []
    signer = load_signer(
        "env:CI_KEY",
        keys_dir=Path("/nonexistent"),
        passphrases=none(),
        warn=warnings.append,
        env={"CI_KEY": value},
    )
    assert signer.public_key == PUB
    assert warnings == []


def test_env_ref_encrypted_key_file_json() -> None:
    """env:VAR holding an encrypted key file's JSON unlocks with OMICTL_PASSPHRASE."""
    doc = json.dumps(seal_seed(SEED, PASS.encode(), name="ci").to_json())
    signer = load_signer("env:CI_KEY", keys_dir=Path("/x"), passphrases=good(), env={"CI_KEY": doc})
    assert signer.public_key == PUB


def test_env_ref_unencrypted_key_file_warns() -> None:
    """env:VAR holding an unencrypted key file warns like any unencrypted key file."""
    doc = json.dumps(plain_key(SEED, name="ci").to_json())
    warnings: list[str] = []
    load_signer(
        "env:CI_KEY",
        keys_dir=Path("/x"),
        passphrases=none(),
        warn=warnings.append,
        env={"CI_KEY": doc},
    )
    assert warnings == ["key ci is stored unencrypted"]


@pytest.mark.parametrize("env", [{}, {"CI_KEY": ""}, {"CI_KEY": "  "}])
def test_env_ref_unset_or_empty(env: dict[str, str]) -> None:
    """env:VAR unset or empty is exit 3, naming the variable; unset, the hint says how
    to give it."""
    with pytest.raises(KeystoreError, match="CI_KEY") as info:
        load_signer("env:CI_KEY", keys_dir=Path("/x"), passphrases=none(), env=env)
    assert info.value.hint is not None
    expected = "set CI_KEY" if not env else "put the key in CI_KEY"
    assert expected in info.value.hint
    assert ("is not set" in info.value.message) is (not env)


def test_env_ref_malformed_seed_is_not_echoed() -> None:
    """A malformed seed in env:VAR is exit 3 and the value is not in the message."""
    value = "ab" * 31
    with pytest.raises(KeystoreError) as err:
        load_signer("env:CI_KEY", keys_dir=Path("/x"), passphrases=none(), env={"CI_KEY": value})
    assert value not in err.value.message
    assert "CI_KEY" in err.value.message


def test_env_ref_malformed_json() -> None:
    """A truncated key file JSON in env:VAR is exit 3."""
    with pytest.raises(KeystoreError, match="the variable CI_KEY"):
        load_signer("env:CI_KEY", keys_dir=Path("/x"), passphrases=none(), env={"CI_KEY": "{"})


def test_load_public_key_needs_no_passphrase(keys_dir: Path) -> None:
    """load_public_key reads the clear public key; no passphrase source is consulted."""
    assert load_public_key("master", keys_dir=keys_dir) == PUB
    assert load_public_key(f"file:{keys_dir / 'master.json'}", keys_dir=keys_dir) == PUB
    assert load_public_key("env:K", keys_dir=keys_dir, env={"K": SEED.hex()}) == PUB


def test_load_public_key_checks_unencrypted_consistency(keys_dir: Path) -> None:
    """An unencrypted file whose seed does not match its public key is refused."""
    path = keys_dir / "plain.json"
    doc = json.loads(path.read_text())
    doc["seed"] = "22" * 32
    path.write_text(json.dumps(doc))
    with pytest.raises(KeystoreError) as err:
        load_public_key("plain", keys_dir=keys_dir)
    assert err.value.code == "inconsistent_key_file"


def test_default_key_ref() -> None:
    """The default reference is the setting, else 'master'."""
    assert default_key_ref("ci") == "ci"
    assert default_key_ref("") == "master"


def test_describe_key_ref() -> None:
    """describe_key_ref labels a reference without its content."""
    assert describe_key_ref("env:K") == "$K"
    assert describe_key_ref("file:/a/b.json") == "/a/b.json"
    assert describe_key_ref("master") == "master"
