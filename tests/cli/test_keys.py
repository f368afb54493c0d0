"""``omictl keys``: the real CLI through ``omictl.cli.app.run``: exit codes, stdout, stderr."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import rfc8785

from omictl.cli import keys as keys_cli
from omictl.cli.app import run
from omictl.core.envelope import Signer, key_id
from omictl.keystore import MODERATE_LIMITS

pytestmark = pytest.mark.usefixtures("fast_kdf", "clean_omictl_env")

PASS = "a long passphrase"
SEED = bytes(range(100, 132))
PUB = Signer(SEED).public_key
KID = key_id(PUB)
ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


@dataclass
class Result:
    """What one CLI run printed and returned."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """stdout as the one JSON document it must be."""
        return json.loads(self.out)


@dataclass
class Cli:
    """Runs omictl with ``--home`` set to a temporary folder."""

    home: Path
    capsys: pytest.CaptureFixture[str]
    monkeypatch: pytest.MonkeyPatch

    @property
    def keys_dir(self) -> Path:
        """The keystore folder."""
        return self.home / "keys"

    def __call__(self, *args: str, stdin: bytes | None = None) -> Result:
        """Run ``omictl --home HOME ARGS`` and capture its output."""
        self.capsys.readouterr()
        if stdin is not None:
            self.monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        code = run(["--home", str(self.home), *args])
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def snapshot(self) -> dict[str, str]:
        """Every file under HOME with its content hash and mode (to prove nothing changed)."""
        out: dict[str, str] = {}
        for path in sorted(self.home.rglob("*")):
            if path.is_file():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                out[str(path)] = f"{digest} {stat.S_IMODE(path.stat().st_mode):o}"
        return out

    def add_seed(self, name: str = "master", *, passphrase: str | None = PASS) -> None:
        """Import SEED as ``name`` (with OMICTL_PASSPHRASE, or unencrypted)."""
        extra = ["--no-passphrase"] if passphrase is None else []
        if passphrase is not None:
            self.monkeypatch.setenv("OMICTL_PASSPHRASE", passphrase)
        result = self("keys", "import", name, "-", "--seed", *extra, stdin=SEED.hex().encode())
        assert result.code == 0, result.err


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """A CLI runner with an empty home."""
    home = tmp_path / "home"
    home.mkdir()
    return Cli(home, capsys, monkeypatch)


def assert_clean_error(result: Result, code: int) -> None:
    """The run failed with ``code`` and one ``omictl: error:`` line, no traceback."""
    assert result.code == code, (result.out, result.err)
    assert "omictl: error:" in result.err
    assert "Traceback" not in result.err + result.out


def key_info(name: str = "master", *, encrypted: bool = True, **extra: Any) -> dict[str, Any]:
    """The JSON keys show/list print for SEED."""
    return {
        "name": name,
        "kind": "master",
        "key_id": KID,
        "public_key": PUB.hex(),
        "encrypted": encrypted,
        **extra,
    }


def without(doc: dict[str, Any], *members: str) -> dict[str, Any]:
    """``doc`` minus ``members`` (for times and paths)."""
    return {k: v for k, v in doc.items() if k not in members}


# ---------------------------------------------------------------------------- generate, list


def test_generate_with_passphrase_file(cli: Cli, tmp_path: Path) -> None:
    """generate --passphrase-file creates an encrypted 0600 key and prints its public facts."""
    pass_file = tmp_path / "pass"
    pass_file.write_text(PASS + "\n")
    result = cli("-o", "json", "keys", "generate", "master", "--passphrase-file", str(pass_file))
    assert result.code == 0, result.err
    info = result.json()
    assert set(info) == {"name", "kind", "key_id", "public_key", "created_at", "encrypted", "path"}
    assert info["name"] == "master" and info["kind"] == "master" and info["encrypted"] is True
    assert info["key_id"] == key_id(bytes.fromhex(info["public_key"]))
    path = cli.keys_dir / "master.json"
    assert info["path"] == str(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cli.keys_dir.stat().st_mode) == 0o700
    assert PASS not in result.out + result.err


def test_generate_guardian_text_output(cli: Cli) -> None:
    """generate --guardian prints the key's facts as text on stdout."""
    cli.monkeypatch.setenv("OMICTL_PASSPHRASE", PASS)
    result = cli("keys", "generate", "g1", "--guardian")
    assert result.code == 0, result.err
    assert "kind:        guardian" in result.out
    assert "encrypted:   yes" in result.out
    assert "created guardian key g1" in result.err


def test_generate_existing_key_refused(cli: Cli) -> None:
    """generate over an existing key without --force is exit 3 and changes nothing."""
    cli.add_seed()
    before = cli.snapshot()
    result = cli("keys", "generate", "master")
    assert_clean_error(result, 3)
    assert "already exists" in result.err
    assert cli.snapshot() == before


def test_generate_no_passphrase_warns(cli: Cli) -> None:
    """--no-passphrase stores the key unencrypted and says so loudly."""
    result = cli("keys", "generate", "ci", "--no-passphrase")
    assert result.code == 0
    assert "UNENCRYPTED" in result.err
    assert json.loads((cli.keys_dir / "ci.json").read_text())["encrypted"] is False


def test_list_json_exact(cli: Cli) -> None:
    """keys list -o json lists every key's public facts, never a private member."""
    cli.add_seed("master")
    cli.add_seed("plain", passphrase=None)
    result = cli("-o", "json", "keys", "list")
    assert result.code == 0
    keys = result.json()["keys"]
    assert [without(k, "created_at", "path") for k in keys] == [
        key_info("master"),
        key_info("plain", encrypted=False),
    ]
    assert "ciphertext" not in result.out and SEED.hex() not in result.out


def test_list_text_and_empty(cli: Cli) -> None:
    """keys list as text: a header and one row per key; an empty keystore says so on stderr."""
    empty = cli("keys", "list")
    assert empty.code == 0 and empty.out == "" and "no keys" in empty.err
    cli.add_seed()
    result = cli("keys", "list")
    lines = result.out.splitlines()
    assert lines[0].split() == [
        "NAME",
        "KIND",
        "KEY",
        "ID",
        "ENCRYPTED",
        "CREATED",
        "PUBLIC",
        "KEY",
    ]
    assert lines[1].split()[:4] == ["master", "master", KID, "yes"]
    assert lines[1].split()[-1] == PUB.hex()


def test_list_warns_about_broken_file(cli: Cli) -> None:
    """A broken key file is reported on stderr; the others are still listed."""
    cli.add_seed()
    (cli.keys_dir / "broken.json").write_text("{")
    result = cli("-o", "json", "keys", "list")
    assert result.code == 0
    assert [k["name"] for k in result.json()["keys"]] == ["master"]
    assert "broken.json" in result.err
    # and in the document, as receipts list does: a script sees the file it cannot use
    [unreadable] = result.json()["unreadable"]
    assert unreadable["path"] == str(cli.keys_dir / "broken.json") and unreadable["error"]


def test_show_json_exact(cli: Cli) -> None:
    """keys show prints name, kind, key id, public key, created, encrypted."""
    cli.add_seed()
    result = cli("-o", "json", "keys", "show", "master")
    assert result.code == 0
    assert without(result.json(), "created_at") == key_info(
        "master", path=str(cli.keys_dir / "master.json")
    )


# ---------------------------------------------------------------------------- errors


def _wrong_passphrase(cli: Cli) -> list[str]:
    cli.monkeypatch.setenv("OMICTL_PASSPHRASE", "wrong")
    return ["keys", "passwd", "master", "--no-passphrase"]


def _corrupt_file(cli: Cli) -> list[str]:
    path = cli.keys_dir / "master.json"
    path.write_bytes(path.read_bytes()[:100])
    return ["keys", "show", "master"]


def _unknown_key(cli: Cli) -> list[str]:
    return ["keys", "show", "nope"]


def _unsafe_permissions(cli: Cli) -> list[str]:
    (cli.keys_dir / "master.json").chmod(0o644)
    return ["keys", "show", "master"]


def _hostile_kdf(cli: Cli) -> list[str]:
    path = cli.keys_dir / "master.json"
    doc = json.loads(path.read_text())
    doc["kdf"]["memlimit"] = 64 * 1024**3
    path.write_text(json.dumps(doc))
    return ["keys", "show", "master"]


def _swapped_public_key(cli: Cli, tmp_path: Path) -> list[str]:
    path = cli.keys_dir / "master.json"
    doc = json.loads(path.read_text())
    other = Signer(bytes(32)).public_key
    doc["public_key"], doc["key_id"] = other.hex(), key_id(other)
    path.write_text(json.dumps(doc))
    (tmp_path / "p.json").write_text("{}")
    return ["keys", "sign", "master", str(tmp_path / "p.json"), "--context", "x"]


def _no_passphrase_source(cli: Cli, tmp_path: Path) -> list[str]:
    cli.monkeypatch.delenv("OMICTL_PASSPHRASE")
    (tmp_path / "p.json").write_text("{}")
    return ["keys", "sign", "master", str(tmp_path / "p.json"), "--context", "x"]


def _empty_env_passphrase(cli: Cli, tmp_path: Path) -> list[str]:
    cli.monkeypatch.setenv("OMICTL_PASSPHRASE", "")
    (tmp_path / "p.json").write_text("{}")
    return ["keys", "sign", "master", str(tmp_path / "p.json"), "--context", "x"]


def _malformed_seed(cli: Cli, tmp_path: Path) -> list[str]:
    (tmp_path / "seed.txt").write_text("ab" * 31 + "zz")
    return ["keys", "import", "other", str(tmp_path / "seed.txt"), "--seed"]


def _bad_name(cli: Cli) -> list[str]:
    return ["keys", "show", "../../etc/passwd"]


def _malformed_env_seed(cli: Cli, tmp_path: Path) -> list[str]:
    cli.monkeypatch.setenv("CI_SEED", "not a seed")
    (tmp_path / "p.json").write_text("{}")
    return ["keys", "sign", "env:CI_SEED", str(tmp_path / "p.json"), "--context", "x"]


ERROR_CASES: dict[str, tuple[Callable[..., list[str]], int, str]] = {
    "wrong_passphrase": (_wrong_passphrase, 3, "wrong passphrase"),
    "corrupt_file": (_corrupt_file, 3, "not a valid key file"),
    "unknown_key": (_unknown_key, 3, "no key named 'nope'"),
    "unsafe_permissions": (_unsafe_permissions, 3, "accessible by other users"),
    "hostile_kdf": (_hostile_kdf, 3, "memlimit"),
    "swapped_public_key": (_swapped_public_key, 3, "inconsistent"),
    "no_passphrase_source": (_no_passphrase_source, 3, "OMICTL_PASSPHRASE is not set"),
    "empty_env_passphrase": (_empty_env_passphrase, 3, "set but empty"),
    "malformed_seed": (_malformed_seed, 2, "not a 32-byte Ed25519 seed"),
    "bad_name": (_bad_name, 2, "is not valid"),
    "malformed_env_seed": (_malformed_env_seed, 3, "CI_SEED is not a 32-byte"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_error_cases(cli: Cli, tmp_path: Path, case: str) -> None:
    """Each keystore failure is one clean error line with its exit code; nothing changes."""
    cli.add_seed()
    setup, code, message = ERROR_CASES[case]
    args = setup(cli, tmp_path) if setup.__code__.co_argcount == 2 else setup(cli)
    before = cli.snapshot()
    result = cli(*args)
    assert_clean_error(result, code)
    assert message in result.err
    assert cli.snapshot() == before
    assert SEED.hex() not in result.out + result.err


def test_unsafe_permissions_hint(cli: Cli) -> None:
    """The unsafe-permissions error tells the user the chmod to run."""
    cli.add_seed()
    path = cli.keys_dir / "master.json"
    path.chmod(0o604)
    result = cli("keys", "show", "master")
    assert_clean_error(result, 3)
    assert f"hint: chmod 600 {path}" in result.err


def test_json_error_object(cli: Cli) -> None:
    """With -o json an error is one JSON object on stdout."""
    result = cli("-o", "json", "keys", "show", "nope")
    assert result.code == 3
    assert result.json()["error"]["code"] == "unknown_key"
    assert result.json()["error"]["exit_code"] == 3


# ---------------------------------------------------------------------------- export, import


def test_export_public(cli: Cli) -> None:
    """export --public prints the public key hex."""
    cli.add_seed()
    assert cli("keys", "export", "master", "--public").out == PUB.hex() + "\n"
    result = cli("-o", "json", "keys", "export", "master", "--public")
    assert result.json() == {
        "name": "master",
        "kind": "master",
        "key_id": KID,
        "public_key": PUB.hex(),
    }


def test_export_backup_and_restore(cli: Cli, tmp_path: Path) -> None:
    """export --out writes the encrypted key file 0600; import restores it under a new name."""
    cli.add_seed()
    backup = tmp_path / "backup.json"
    result = cli("keys", "export", "master", "--out", str(backup))
    assert result.code == 0, result.err
    assert backup.read_bytes() == (cli.keys_dir / "master.json").read_bytes()
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    restored = cli("-o", "json", "keys", "import", "restored", str(backup))
    assert restored.code == 0, restored.err
    assert restored.json()["key_id"] == KID
    (tmp_path / "p.json").write_text("{}")
    signed = cli("keys", "sign", "restored", str(tmp_path / "p.json"), "--context", "x")
    assert signed.code == 0, signed.err
    assert signed.json()["public_key_hint"] == KID


def test_export_out_refuses_overwrite(cli: Cli, tmp_path: Path) -> None:
    """export --out onto an existing file is exit 2 without --force."""
    cli.add_seed()
    target = tmp_path / "exists.json"
    target.write_text("keep me")
    result = cli("keys", "export", "master", "--out", str(target))
    assert_clean_error(result, 2)
    assert target.read_text() == "keep me"
    assert cli("keys", "export", "master", "--out", str(target), "--force").code == 0
    assert json.loads(target.read_text())["key_id"] == KID


def test_export_to_stdout_is_the_file(cli: Cli) -> None:
    """export without --out prints the key file as stored."""
    cli.add_seed()
    result = cli("keys", "export", "master")
    assert result.out == (cli.keys_dir / "master.json").read_text()


def test_export_out_dash_is_stdout_and_an_empty_out_is_refused(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """--out - is stdout (as `keys import NAME -` reads stdin), never a file named "-";
    --out '' (the current folder) is exit 2, said before anything else."""
    cli.add_seed()
    monkeypatch.chdir(tmp_path)
    result = cli("keys", "export", "master", "--public", "--out", "-")
    assert result.code == 0 and result.out.strip() == PUB.hex()
    assert not (tmp_path / "-").exists()
    result = cli("keys", "export", "master", "--out", "")
    assert_clean_error(result, 2)
    assert "is a folder" in result.err
    # only "-" itself is stdout: ./- is a file of that name, as the user wrote it
    result = cli("keys", "export", "master", "--public", "--out", "./-")
    assert result.code == 0 and (tmp_path / "-").read_text().strip() == PUB.hex()
    assert "to ./-" in result.err


@pytest.mark.parametrize(
    "encoding", [bytes.hex, lambda s: base64.b64encode(s).decode()], ids=["hex", "b64"]
)
def test_import_seed_from_file(cli: Cli, tmp_path: Path, encoding: Callable[[bytes], str]) -> None:
    """import --seed FILE reads hex or base64 and stores it encrypted."""
    cli.monkeypatch.setenv("OMICTL_PASSPHRASE", PASS)
    seed_file = tmp_path / "seed"
    seed_file.write_text(encoding(SEED) + "\n")
    result = cli("-o", "json", "keys", "import", "ci", str(seed_file), "--seed", "--guardian")
    assert result.code == 0, result.err
    assert without(result.json(), "created_at", "path") == {**key_info("ci"), "kind": "guardian"}
    assert SEED.hex() not in (cli.keys_dir / "ci.json").read_text()


def test_import_options_need_seed(cli: Cli, tmp_path: Path) -> None:
    """--guardian/--no-passphrase on a key-file import are a usage error."""
    result = cli("keys", "import", "x", str(tmp_path / "f"), "--guardian")
    assert_clean_error(result, 2)


def test_import_garbage_key_file(cli: Cli, tmp_path: Path) -> None:
    """Importing something that is not an omictl key file is exit 3, nothing written."""
    (tmp_path / "junk.json").write_text('{"hello": 1}')
    result = cli("keys", "import", "x", str(tmp_path / "junk.json"))
    assert_clean_error(result, 3)
    assert not (cli.keys_dir / "x.json").exists()


def test_import_of_a_weakly_sealed_key_file_warns(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backup sealed below omictl's Argon2id cost imports, with a warning naming the fix."""
    from omictl import keystore

    cli.add_seed()  # sealed at MIN (the suite's fast KDF)
    backup = tmp_path / "backup.json"
    assert cli("keys", "export", "master", "--out", str(backup)).code == 0
    monkeypatch.setattr(keystore, "KDF_LIMITS", keystore.MODERATE_LIMITS)
    result = cli("keys", "import", "restored", str(backup))
    assert result.code == 0, result.err
    assert "weak Argon2id cost" in result.err and "omictl keys passwd restored" in result.err


# ---------------------------------------------------------------------------- delete, passwd


def test_delete_without_tty_or_yes_is_usage_error(cli: Cli) -> None:
    """delete with no terminal and no --yes is exit 2 and deletes nothing."""
    cli.add_seed()
    result = cli("keys", "delete", "master")
    assert_clean_error(result, 2)
    assert "--yes" in result.err
    assert (cli.keys_dir / "master.json").exists()


def test_delete_yes(cli: Cli) -> None:
    """delete --yes removes the key."""
    cli.add_seed()
    result = cli("-o", "json", "keys", "delete", "master", "--yes")
    assert result.code == 0
    assert result.json() == {"name": "master", "key_id": KID, "deleted": True}
    assert not (cli.keys_dir / "master.json").exists()


@pytest.mark.parametrize(("typed", "code"), [("master\n", 0), ("mast\n", 7), ("", 7)])
def test_delete_confirmation_on_tty(cli: Cli, typed: str, code: int) -> None:
    """On a terminal, delete asks for the key name; anything else aborts (exit 7)."""
    cli.add_seed()
    cli.monkeypatch.setattr(keys_cli, "_stdin_is_tty", lambda: True)
    result = cli("keys", "delete", "master", stdin=typed.encode())
    assert result.code == code, result.err
    assert "type the key name" in result.err
    assert (cli.keys_dir / "master.json").exists() is (code != 0)


def test_ctrl_c_at_the_delete_prompt_is_a_decline(cli: Cli) -> None:
    """Ctrl-C at the delete prompt keeps the key and is exit 7 (aborted at the
    confirmation prompt), not 130."""
    import signal

    cli.add_seed()
    cli.monkeypatch.setattr(keys_cli, "_stdin_is_tty", lambda: True)

    def ctrl_c(prompt: str) -> str:
        signal.raise_signal(signal.SIGINT)
        raise AssertionError("unreachable")

    cli.monkeypatch.setattr("omictl.cli.common.ask", ctrl_c)
    result = cli("keys", "delete", "master")
    assert result.code == 7, result.err
    assert "not confirmed; nothing was deleted" in result.err
    assert (cli.keys_dir / "master.json").exists()


def test_delete_unknown(cli: Cli) -> None:
    """delete of an unknown key is exit 3."""
    assert_clean_error(cli("keys", "delete", "ghost", "--yes"), 3)


def test_passwd_with_files(cli: Cli, tmp_path: Path) -> None:
    """passwd re-encrypts with the new passphrase; the old one stops working."""
    cli.add_seed()
    cli.monkeypatch.delenv("OMICTL_PASSPHRASE")
    old, new = tmp_path / "old", tmp_path / "new"
    old.write_text(PASS)
    new.write_text("brand new")
    before = json.loads((cli.keys_dir / "master.json").read_text())
    result = cli(
        "keys", "passwd", "master", "--passphrase-file", str(old), "--new-passphrase-file", str(new)
    )
    assert result.code == 0, result.err
    after = json.loads((cli.keys_dir / "master.json").read_text())
    assert after["kdf"]["salt"] != before["kdf"]["salt"]
    assert after["public_key"] == before["public_key"]
    (tmp_path / "p.json").write_text("{}")
    sign = ["keys", "sign", "master", str(tmp_path / "p.json"), "--context", "x"]
    assert cli(*sign, "--passphrase-file", str(new)).code == 0
    assert_clean_error(cli(*sign, "--passphrase-file", str(old)), 3)


def test_passwd_interrupted_keeps_old_file(cli: Cli, tmp_path: Path) -> None:
    """passwd failing at the rename leaves the old file working with the old passphrase."""
    cli.add_seed()
    cli.monkeypatch.setenv("OMICTL_NEW_PASSPHRASE", "brand new")
    before = cli.snapshot()

    def fail(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "replace", fail)
        result = cli("keys", "passwd", "master")
    assert_clean_error(result, 3)
    assert cli.snapshot() == before
    (tmp_path / "p.json").write_text("{}")
    assert cli("keys", "sign", "master", str(tmp_path / "p.json"), "--context", "x").code == 0


# ---------------------------------------------------------------------------- sign, verify


def sign(cli: Cli, tmp_path: Path, data: dict[str, Any], *extra: str) -> Result:
    """Run keys sign master on ``data``."""
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps(data))
    return cli("keys", "sign", "master", str(payload), *extra)


def test_sign_adds_context_timestamp_nonce(cli: Cli, tmp_path: Path) -> None:
    """sign sets data.context and adds an int timestamp and a 22-char nonce."""
    cli.add_seed()
    result = sign(cli, tmp_path, {"app_id": "a"}, "--context", "decommission")
    assert result.code == 0, result.err
    env = result.json()
    assert set(env) == {"version", "data", "signature", "public_key_hint"}
    data = env["data"]
    assert data["app_id"] == "a" and data["context"] == "decommission"
    assert isinstance(data["timestamp"], int) and len(data["nonce"]) == 22
    assert env["public_key_hint"] == KID
    assert "signed with key master" in result.err


def test_sign_keeps_given_timestamp_and_nonce(cli: Cli, tmp_path: Path) -> None:
    """A payload's own timestamp and nonce are kept; context is always set."""
    cli.add_seed()
    data = {"timestamp": 5, "nonce": "n" * 22, "context": "old"}
    env = sign(cli, tmp_path, data, "--context", "new").json()
    assert env["data"] == {"timestamp": 5, "nonce": "n" * 22, "context": "new"}


def test_sign_from_stdin_with_json_output(cli: Cli) -> None:
    """sign reads - from stdin; with -o json stdout is exactly the envelope."""
    cli.add_seed()
    result = cli(
        "-o", "json", "keys", "sign", "master", "-", "--context", "x", stdin=b'{"k": [1, 2]}'
    )
    assert result.code == 0, result.err
    assert result.json()["data"]["k"] == [1, 2]


@pytest.mark.parametrize("payload", [b"[1]", b"{", b'{"a": 1, "a": 2}', b'{"x": NaN}'])
def test_sign_malformed_payload(cli: Cli, payload: bytes) -> None:
    """A payload that is not one strict JSON object is exit 2."""
    cli.add_seed()
    result = cli("keys", "sign", "master", "-", "--context", "x", stdin=payload)
    assert_clean_error(result, 2)


def test_sign_unencrypted_key_warns_each_time(cli: Cli, tmp_path: Path) -> None:
    """Signing with an unencrypted key warns on stderr every time."""
    cli.add_seed(passphrase=None)
    for _ in range(2):
        result = sign(cli, tmp_path, {}, "--context", "x")
        assert result.code == 0
        assert "key master is stored unencrypted" in result.err


def test_sign_env_ref_raw_seed(cli: Cli, tmp_path: Path) -> None:
    """sign env:VAR with a base64 seed works in CI without a keystore or passphrase."""
    cli.monkeypatch.setenv("CI_SEED", base64.b64encode(SEED).decode())
    payload = tmp_path / "p.json"
    payload.write_text("{}")
    result = cli("keys", "sign", "env:CI_SEED", str(payload), "--context", "x")
    assert result.code == 0, result.err
    assert result.json()["public_key_hint"] == KID
    assert base64.b64encode(SEED).decode() not in result.out + result.err


def test_sign_then_verify(cli: Cli, tmp_path: Path) -> None:
    """verify exits 0 on a good signature and 5 on a tampered one."""
    cli.add_seed()
    env = sign(cli, tmp_path, {"n": 1}, "--context", "x").json()
    good = tmp_path / "good.json"
    good.write_text(json.dumps(env))
    ok = cli("-o", "json", "keys", "verify", str(good), "--public-key", PUB.hex())
    assert ok.code == 0, ok.err
    assert ok.json() == {"valid": True, "key_id": KID, "context": "x"}
    mixed = "".join(c.upper() if i % 2 else c for i, c in enumerate(PUB.hex()))
    assert cli("keys", "verify", str(good), "--public-key", mixed).code == 0  # typed: any case
    env["data"]["n"] = 2
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(env))
    result = cli("keys", "verify", str(bad), "--public-key", PUB.hex())
    assert_clean_error(result, 5)


def test_verify_wrong_context_is_5(cli: Cli, tmp_path: Path) -> None:
    """verify --context CTX exits 5 if data.context differs."""
    cli.add_seed()
    env = tmp_path / "env.json"
    env.write_text(sign(cli, tmp_path, {}, "--context", "x").out)
    result = cli("keys", "verify", str(env), "--public-key", PUB.hex(), "--context", "y")
    assert_clean_error(result, 5)


@pytest.mark.parametrize(
    ("envelope", "public_key", "code"),
    [
        ("{", PUB.hex(), 2),  # not JSON: nothing to verify
        ('{"version": "1.0", "data": {}, "signature": "' + "00" * 64 + '"}', "xyz", 2),
        ('{"version": "1.0", "data": {}}', PUB.hex(), 5),  # JSON that does not verify
        ('{"version": "2.0", "data": {}, "signature": "' + "00" * 64 + '"}', PUB.hex(), 5),
        ('{"version": "1.0", "data": {}, "signature": "' + "zz" * 64 + '"}', PUB.hex(), 5),
        ('{"data": {}, "signature": "' + "00" * 64 + '"}', PUB.hex(), 5),
    ],
)
def test_verify_unreadable_input_is_2_an_envelope_that_is_no_good_is_5(
    cli: Cli, tmp_path: Path, envelope: str, public_key: str, code: int
) -> None:
    """A file that is not JSON, or a bad --public-key, is exit 2 (the input); JSON that is
    no good envelope (no signature, another version, a signature that is not hex, no
    version) is exit 5 like a bad signature (CLI.md: "5 on a bad one")."""
    path = tmp_path / "env.json"
    path.write_text(envelope)
    assert_clean_error(cli("keys", "verify", str(path), "--public-key", public_key), code)


def test_verify_missing_file_is_2(cli: Cli, tmp_path: Path) -> None:
    """A missing envelope file is exit 2."""
    result = cli("keys", "verify", str(tmp_path / "nope"), "--public-key", PUB.hex())
    assert_clean_error(result, 2)


def _openssl_has_ed25519_rawin() -> bool:
    if shutil.which("openssl") is None:
        return False
    proc = subprocess.run(["openssl", "pkeyutl", "-help"], capture_output=True, text=True)
    return "-rawin" in proc.stdout + proc.stderr


@pytest.mark.skipif(not _openssl_has_ed25519_rawin(), reason="openssl with -rawin not available")
def test_sign_verifies_under_openssl(cli: Cli, tmp_path: Path) -> None:
    """The envelope verifies with OpenSSL over the RFC 8785 bytes of data."""
    cli.add_seed()
    env = sign(cli, tmp_path, {"b": "é", "a": [1, 2.5, None], "z": {"y": True}}, "--context", "x")
    envelope = env.json()
    der = ED25519_SPKI_PREFIX + PUB
    pem = (
        "-----BEGIN PUBLIC KEY-----\n"
        + base64.b64encode(der).decode()
        + "\n-----END PUBLIC KEY-----\n"
    )
    (tmp_path / "pub.pem").write_text(pem)
    (tmp_path / "msg").write_bytes(rfc8785.dumps(envelope["data"]))
    (tmp_path / "sig").write_bytes(bytes.fromhex(envelope["signature"]))
    cmd = [
        "openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(tmp_path / "pub.pem"),
        "-rawin", "-in", str(tmp_path / "msg"), "-sigfile", str(tmp_path / "sig"),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Signature Verified Successfully" in proc.stdout
    (tmp_path / "msg").write_bytes(rfc8785.dumps({**envelope["data"], "a": []}))
    assert subprocess.run(cmd, capture_output=True).returncode != 0


def test_sign_verifies_under_cryptography(cli: Cli, tmp_path: Path) -> None:
    """The envelope verifies with the `cryptography` package, if installed."""
    ed25519 = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ed25519")
    cli.add_seed()
    envelope = sign(cli, tmp_path, {"x": 1}, "--context", "x").json()
    public = ed25519.Ed25519PublicKey.from_public_bytes(PUB)
    public.verify(bytes.fromhex(envelope["signature"]), rfc8785.dumps(envelope["data"]))


# ---------------------------------------------------------------------------- real process


def test_real_process_uses_moderate_kdf(tmp_path: Path) -> None:
    """A real `omictl keys generate` (no test patch) seals with MODERATE limits (~1 s)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMICTL_")}
    env["OMICTL_PASSPHRASE"] = PASS
    proc = subprocess.run(
        [sys.executable, "-m", "omictl", "--home", str(tmp_path), "keys", "generate", "m"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    kdf = json.loads((tmp_path / "keys" / "m.json").read_text())["kdf"]
    assert kdf["opslimit"] == MODERATE_LIMITS.opslimit
    assert kdf["memlimit"] == MODERATE_LIMITS.memlimit
    assert PASS not in proc.stdout + proc.stderr


def test_import_without_a_file_on_a_terminal_says_so_instead_of_waiting(cli: Cli) -> None:
    """`keys import NAME` reads stdin: on a terminal that would wait, silently, for a
    pasted file. It is exit 2 with the two ways to give the file."""
    cli.monkeypatch.setattr(keys_cli, "_stdin_is_tty", lambda: True)
    result = cli("keys", "import", "backup")
    assert_clean_error(result, 2)
    assert "stdin is a terminal" in result.err and "- < FILE" in result.err
    assert not (cli.keys_dir / "backup.json").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["keys", "generate", "fresh", "--no-passphrase", "--passphrase-file", "PW"],
        ["keys", "import", "fresh", "--seed", "--no-passphrase", "--passphrase-file", "PW", "-"],
        ["keys", "passwd", "master", "--no-passphrase", "--new-passphrase-file", "PW"],
    ],
)
def test_no_passphrase_with_a_passphrase_file_is_a_contradiction(
    cli: Cli, tmp_path: Path, args: list[str]
) -> None:
    """A passphrase file given with --no-passphrase is not silently ignored (the key would
    be stored in clear): exit 2, and no key file written or changed."""
    cli.add_seed()
    before = cli.snapshot()
    pw = tmp_path / "pw"
    pw.write_text("a new passphrase\n")
    result = cli(*[str(pw) if a == "PW" else a for a in args], stdin=SEED.hex().encode())
    assert_clean_error(result, 2)
    assert "contradict" in result.err
    assert cli.snapshot() == before


def test_generate_force_names_the_key_it_replaces(cli: Cli) -> None:
    """--force replaces a key: the warning names the key id that is gone."""
    cli.add_seed()
    result = cli("keys", "generate", "master", "--force")
    assert result.code == 0, result.err
    assert f"replaced key master (key id {KID})" in result.err
    assert "backup" in result.err


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"nonce": "!"}, "nonce must be 16 to 64 characters"),
        ({"nonce": 12345678901234567890}, "nonce must be 16 to 64 characters"),
        ({"timestamp": "x"}, "timestamp must be integer Unix seconds"),
        ({"timestamp": True}, "timestamp must be integer Unix seconds"),
        ({"n": 2**60}, "cannot be canonicalized"),  # past RFC 8785's integer domain
    ],
)
def test_sign_refuses_a_payload_no_receiver_would_accept_before_unlocking(
    cli: Cli, tmp_path: Path, data: dict[str, Any], fragment: str
) -> None:
    """A payload's own nonce and timestamp follow PROTOCOL.md section 1; checked (and the
    payload canonicalized) before the key is unlocked: exit 2, one line and a hint."""
    cli.add_seed()
    cli.monkeypatch.delenv("OMICTL_PASSPHRASE")  # an unlock would fail (exit 3): none happens
    result = sign(cli, tmp_path, data, "--context", "x")
    assert_clean_error(result, 2)
    assert fragment in result.err


def test_import_with_a_dash_on_a_terminal_refuses_rather_than_echo_a_pasted_key(
    cli: Cli,
) -> None:
    """`keys import NAME -` on a terminal: a pasted key file would be echoed (an
    unencrypted one holds its seed), so it is refused like a missing FILE; piped, it reads."""
    cli.add_seed()
    backup = (cli.keys_dir / "master.json").read_bytes()
    cli.monkeypatch.setattr(keys_cli, "_stdin_is_tty", lambda: True)
    result = cli("keys", "import", "pasted", "-", stdin=backup)
    assert_clean_error(result, 2)
    assert "- < FILE" in result.err
    cli.monkeypatch.setattr(keys_cli, "_stdin_is_tty", lambda: False)
    assert cli("keys", "import", "pasted", "-", stdin=backup).code == 0


def test_a_key_file_with_a_duplicate_member_names_it(cli: Cli) -> None:
    """docs/keystore.md: duplicate members make the file invalid, and the error names the
    member (not just "not JSON")."""
    cli.add_seed()
    path = cli.keys_dir / "master.json"
    path.write_text(path.read_text().replace('"kind"', '"kind": "guardian", "kind"', 1))
    result = cli("keys", "show", "master")
    assert_clean_error(result, 3)
    assert "duplicate member 'kind'" in result.err


def test_generate_force_warns_even_when_the_replaced_file_is_unreadable(cli: Cli) -> None:
    """A key file with loose permissions is still a key: its id is named; a damaged one
    is still said to be replaced."""
    cli.add_seed()
    (cli.keys_dir / "master.json").chmod(0o644)
    result = cli("keys", "generate", "master", "--force")
    assert result.code == 0, result.err
    assert f"replaced key master (key id {KID})" in result.err
    (cli.keys_dir / "master.json").write_text("{damaged")
    (cli.keys_dir / "master.json").chmod(0o600)
    result = cli("keys", "generate", "master", "--force")
    assert result.code == 0, result.err
    assert "replaced key master (an unreadable key file)" in result.err


def test_a_keys_folder_that_cannot_be_searched_is_a_keystore_problem(cli: Cli) -> None:
    """EACCES on the keys folder (checking whether a key exists) is exit 3 with a hint,
    as for an unreadable key file, not a usage error or a bug."""
    import omictl.keystore as keystore

    real_lstat = os.lstat

    def refused(path: Any, *args: Any, **kwargs: Any) -> Any:
        if str(path).startswith(str(cli.keys_dir)):
            raise PermissionError(13, "Permission denied", str(path))
        return real_lstat(path, *args, **kwargs)

    cli.monkeypatch.setattr(keystore.os, "lstat", refused)
    result = cli("keys", "generate", "other", "--no-passphrase")
    assert_clean_error(result, 3)
    assert "Permission denied" in result.err and "hint:" in result.err


@pytest.mark.parametrize(
    "args",
    [["generate", "new"], ["import", "new", "--seed"]],
    ids=["generate", "import-seed"],
)
def test_a_keys_folder_others_may_write_is_refused_before_any_prompt(
    cli: Cli, args: list[str]
) -> None:
    """The folder check comes before the passphrase or the secret seed is asked for: a
    user never types a secret into a command that then refuses (exit 3)."""
    import getpass

    cli.add_seed()
    cli.keys_dir.chmod(0o777)
    asked: list[str] = []

    def prompt(text: str = "") -> str:
        asked.append(text)
        return "x" * 64

    cli.monkeypatch.setattr(keys_cli, "_stdin_is_tty", lambda: True)
    cli.monkeypatch.setattr(getpass, "getpass", prompt)
    result = cli("keys", *args)
    assert_clean_error(result, 3)
    assert "chmod 700" in result.err and asked == []
    assert not (cli.keys_dir / "new.json").exists()
