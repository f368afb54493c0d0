"""No secret leaks: a known seed and passphrase never appear in output, errors or files.

Every command runs in-process against the sandbox on 127.0.0.1, with a known master seed
and known passphrases (from a passphrase file and from OMICTL_PASSPHRASE), failures
included and with ``--debug`` tracebacks. Then stdout, stderr and every file under the
omictl home (keys, journals, archive, config, pins, locks, temp files) are searched for
the seed in every usual encoding and for the passphrases.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from omictl.cli.app import run
from omictl.core.envelope import Signer
from omictl.errors import OmictlError
from omictl.keyref import load_signer
from omictl.keystore import (
    PassphraseSource,
    load_key,
    parse_key_bytes,
    parse_seed_text,
    plain_key,
    seal_seed,
)
from omictl.sandbox import Sandbox, start_sandbox
from tests.security import helpers as h

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("fast_kdf")]

SEED = hashlib.sha256(b"omictl secrets-test master seed").digest()
PASSPHRASE = "Tr0ub4dor&3 secrets-test passphrase"
NEW_PASSPHRASE = "second secrets-test passphrase 42!"
WRONG_PASSPHRASE = "not the passphrase at all"
#: A seed spelling with one character changed: refused, and never echoed either.
DAMAGED_SEED = SEED.hex()[:-1] + ("0" if SEED.hex()[-1] != "0" else "1") + "z"
SEED_VAR = "OMICTL_SECRETS_TEST_SEED"
BAD_SEED_VAR = "OMICTL_SECRETS_TEST_BAD_SEED"


def needles() -> dict[str, bytes]:
    """Every secret spelling to look for."""
    found = {f"seed {name}": value for name, value in h.encodings(SEED).items()}
    found["seed hex (first half)"] = SEED.hex()[:32].encode()
    found["passphrase"] = PASSPHRASE.encode()
    found["new passphrase"] = NEW_PASSPHRASE.encode()
    found["wrong passphrase"] = WRONG_PASSPHRASE.encode()
    found["damaged seed"] = DAMAGED_SEED.encode()
    return found


def leaks(blob: bytes) -> list[str]:
    """The names of the secrets ``blob`` contains."""
    return [name for name, needle in needles().items() if needle in blob]


@dataclass
class Run:
    """One CLI invocation and what it printed."""

    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class World:
    """A sandbox whose app's master key is SEED, an omictl home, and a CLI runner."""

    sandbox: Sandbox
    home: Path
    files: Path
    capsys: pytest.CaptureFixture[str]
    runs: list[Run] = field(default_factory=list)

    def cli(self, *args: str, expect: int = 0) -> Run:
        """Run omictl in-process; check its exit code; keep its output for the scan."""
        self.capsys.readouterr()
        code = run(list(args))
        captured = self.capsys.readouterr()
        result = Run(args, code, captured.out, captured.err)
        self.runs.append(result)
        assert code == expect, (args, code, captured.err)
        return result


@pytest.fixture
def world(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[World]:
    """A sandbox trusting SEED's public key; OMICTL_PASSPHRASE set; the seed in a file."""
    for name in list(os.environ):
        if name.startswith("OMICTL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NO_COLOR", "1")
    files = tmp_path / "inputs"
    files.mkdir()
    (files / "seed.txt").write_text(SEED.hex() + "\n")
    (files / "damaged-seed.txt").write_text(DAMAGED_SEED + "\n")
    (files / "pass.txt").write_text(PASSPHRASE + "\n")
    (files / "wrong-pass.txt").write_text(WRONG_PASSPHRASE + "\n")
    (files / "payload.json").write_text(json.dumps({"app_id": h.APP_ID, "note": "hello"}))
    home = tmp_path / "home"
    with start_sandbox(master_public_key=Signer(SEED).public_key, services=3) as sandbox:
        monkeypatch.setenv("OMICTL_HOME", str(home))
        monkeypatch.setenv("OMICTL_REGISTRY", sandbox.registry_url)
        monkeypatch.setenv("OMICTL_PASSPHRASE", PASSPHRASE)
        monkeypatch.setenv("OMICTL_NEW_PASSPHRASE", NEW_PASSPHRASE)
        monkeypatch.setenv(SEED_VAR, h.encodings(SEED)["base64"].decode())
        monkeypatch.setenv(BAD_SEED_VAR, DAMAGED_SEED)
        yield World(sandbox=sandbox, home=home, files=files, capsys=capsys)


def run_every_command(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command of CLI.md, with the known seed and passphrases, failures included."""
    f = w.files
    app_id = w.sandbox.app_id
    sid, other, third = w.sandbox.service_ids[:3]
    url = w.sandbox.registry_url
    debug_fail = ("--debug",)

    # keys
    w.cli(
        "keys",
        "import",
        "master",
        str(f / "seed.txt"),
        "--seed",
        "--passphrase-file",
        str(f / "pass.txt"),
    )
    w.cli("keys", "generate", "spare", "--guardian")
    w.cli("keys", "list")
    w.cli("-o", "json", "keys", "list")
    w.cli("keys", "show", "master")
    w.cli("keys", "export", "master", "--public")
    w.cli("keys", "export", "master")
    w.cli("-o", "json", "keys", "export", "master")
    w.cli("keys", "export", "master", "--out", str(f / "backup.json"))
    w.cli("keys", "import", "copy", str(f / "backup.json"))
    w.cli("keys", "passwd", "copy", "--passphrase-file", str(f / "pass.txt"))
    w.cli(
        *debug_fail,
        "keys",
        "passwd",
        "copy",
        "--passphrase-file",
        str(f / "wrong-pass.txt"),
        expect=3,
    )
    sign = w.cli("keys", "sign", "master", str(f / "payload.json"), "--context", "test")
    (f / "envelope.json").write_text(sign.out)
    w.cli("keys", "sign", f"env:{SEED_VAR}", str(f / "payload.json"), "--context", "test")
    w.cli(
        *debug_fail,
        "keys",
        "sign",
        f"env:{BAD_SEED_VAR}",
        str(f / "payload.json"),
        "--context",
        "x",
        expect=3,
    )
    w.cli("keys", "verify", str(f / "envelope.json"), "--public-key", Signer(SEED).public_key.hex())
    w.cli("keys", "verify", str(f / "envelope.json"), "--public-key", "00" * 32, expect=5)
    w.cli(*debug_fail, "keys", "import", "bad", str(f / "damaged-seed.txt"), "--seed", expect=2)
    w.cli("keys", "delete", "spare", "--yes")

    # registry and config
    w.cli("registry", "show", url)
    w.cli("registry", "pin", url)
    w.cli("config", "set", "timeout", "15")
    w.cli("config", "set", "key", "master")
    w.cli("config", "show")
    w.cli("-o", "json", "config", "show")

    # status and decommission
    w.cli("status", app_id)
    w.cli("-o", "json", "status", app_id, sid)
    w.cli("decommission", app_id, sid, "--yes", "--dry-run")
    w.cli("-o", "json", "decommission", app_id, sid, "--yes", "--dry-run")
    done = w.cli("-o", "json", "decommission", app_id, sid, "--yes")
    w.cli("decommission", app_id, other, "--yes", "--passphrase-file", str(f / "pass.txt"))
    w.cli(*debug_fail, "decommission", app_id, "no-such-service", "--yes", expect=4)
    w.cli(
        *debug_fail,
        "decommission",
        app_id,
        third,
        "--yes",
        "--passphrase-file",
        str(f / "wrong-pass.txt"),
        expect=3,
    )
    w.cli(
        *debug_fail,
        "-o",
        "json",
        "decommission",
        app_id,
        third,
        "--yes",
        "--key",
        f"env:{BAD_SEED_VAR}",
        expect=3,
    )
    monkeypatch.setenv("OMICTL_PASSPHRASE", WRONG_PASSPHRASE)
    w.cli(*debug_fail, "decommission", app_id, third, "--yes", expect=3)
    monkeypatch.setenv("OMICTL_PASSPHRASE", PASSPHRASE)
    w.cli("-o", "json", "decommission", app_id, third, "--yes", "--key", f"env:{SEED_VAR}")
    w.cli("status", app_id, sid)

    # receipts
    receipt_id = done.json()["receipt_id"]
    w.cli("receipts", "list")
    w.cli("-o", "json", "receipts", "list", app_id)
    w.cli("receipts", "show", receipt_id)
    w.cli("receipts", "export", receipt_id, "--out", str(f / "bundle.json"))
    w.cli("receipts", "verify", str(f / "bundle.json"))
    w.cli(*debug_fail, "receipts", "show", "RCPT-NOPE", expect=2)

    # the rest
    w.cli("demo")


def test_no_secret_in_any_output_or_file(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """After every command, no output, error or file holds the seed or a passphrase."""
    run_every_command(world, monkeypatch)
    found: dict[str, list[str]] = {}
    for item in world.runs:
        for stream, text in (("stdout", item.out), ("stderr", item.err)):
            hit = leaks(text.encode("utf-8", "surrogateescape"))
            if hit:
                found[f"{' '.join(item.args)} ({stream})"] = hit
    scanned = sorted(p for p in world.home.rglob("*") if p.is_file())
    exports = [world.files / "backup.json", world.files / "bundle.json"]
    for path in [*scanned, *exports]:
        hit = leaks(path.read_bytes())
        if hit:
            found[str(path)] = hit
    h.count("secrets: commands run", len(world.runs))
    h.count("secrets: commands run with --debug", sum("--debug" in r.args for r in world.runs))
    h.count("secrets: failing commands run", sum(r.code != 0 for r in world.runs))
    h.count("secrets: files scanned under home", len(scanned))
    h.count("secrets: exported files scanned", len(exports))
    h.count("secrets: needles (encodings + passphrases)", len(needles()))
    assert found == {}
    assert {"master.json", "copy.json"} <= {p.name for p in scanned}
    assert {p.relative_to(world.home).parts[0] for p in scanned} == {
        "keys",
        "state",
        "receipts",
        "config.toml",
        "config.toml.lock",
        "known_registries.json",
        "known_registries.json.lock",
    }
    debug_runs = [r for r in world.runs if "--debug" in r.args]
    assert [("Traceback" in r.err, r.code != 0) for r in debug_runs] == [(True, True)] * 8


# ---------------------------------------------------------------------------- objects


def test_signer_repr_and_str_hold_no_seed() -> None:
    """repr() and str() of a Signer show its name and key id, never the seed."""
    signer = Signer(SEED, name="master")
    for text in (repr(signer), str(signer), f"{signer}", f"{signer!r}"):
        assert leaks(text.encode()) == []
        assert signer.key_id in text


def test_loaded_signer_repr_holds_no_seed(tmp_path: Path) -> None:
    """A Signer unlocked from the keystore (and from env:VAR) prints no seed."""
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    sealed = seal_seed(SEED, PASSPHRASE.encode(), name="master")
    (keys / "master.json").write_text(json.dumps(sealed.to_json()))
    (keys / "master.json").chmod(0o600)
    source = PassphraseSource(env={"OMICTL_PASSPHRASE": PASSPHRASE}, interactive=False)
    from_file = load_signer("master", keys_dir=keys, passphrases=source)
    from_env = load_signer(
        "env:S", keys_dir=keys, passphrases=source, env={"S": SEED.hex().upper()}
    )
    for signer in (from_file, from_env):
        assert signer.public_key == Signer(SEED).public_key
        assert leaks(repr(signer).encode()) == []
        assert leaks(str(signer).encode()) == []


def test_keyfile_repr_and_str_hold_no_seed(tmp_path: Path) -> None:
    """repr() and str() of encrypted and unencrypted KeyFile objects hold no seed."""
    plain = plain_key(SEED, name="plain")
    sealed = seal_seed(SEED, PASSPHRASE.encode(), name="sealed")
    parsed = parse_key_bytes(json.dumps(plain.to_json()).encode(), source="test")
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    (keys / "sealed.json").write_text(json.dumps(sealed.to_json()))
    (keys / "sealed.json").chmod(0o600)
    loaded = load_key(keys, "sealed")
    for key in (plain, sealed, parsed, loaded):
        assert leaks(repr(key).encode()) == []
        assert leaks(str(key).encode()) == []
        assert leaks(json.dumps(key.info()).encode()) == []


def test_sealed_key_document_holds_no_seed() -> None:
    """An encrypted key file document holds the seed in no encoding."""
    sealed = seal_seed(SEED, PASSPHRASE.encode(), name="sealed")
    assert leaks(json.dumps(sealed.to_json()).encode()) == []


def test_seed_parse_errors_do_not_echo_the_value() -> None:
    """A refused seed spelling is named, never echoed, in the error and its hint."""
    with pytest.raises(OmictlError) as caught:
        parse_seed_text(DAMAGED_SEED, what="the variable X")
    text = f"{caught.value} {caught.value.hint} {caught.value.to_json()}"
    assert leaks(text.encode()) == []
    assert "the variable X" in text
