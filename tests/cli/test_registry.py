"""``omictl registry show|pin|forget``: the real CLI with the network mocked (respx)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import respx

from omictl.cli.app import run
from omictl.core.envelope import Signer, key_id

pytestmark = pytest.mark.usefixtures("clean_omictl_env")

URL = "https://registry.example"
INFO_URL = f"{URL}/v1/registry"
KEY = Signer(bytes([1]) * 32).public_key
OTHER = Signer(bytes([2]) * 32).public_key
KID, OTHER_KID = key_id(KEY), key_id(OTHER)


def info(public_key: bytes = KEY) -> dict[str, Any]:
    """A GET /v1/registry body."""
    return {"name": "Example Registry", "public_key": public_key.hex(), "version": "1.0"}


@dataclass
class Result:
    """One CLI run."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """stdout as the one JSON document it must be."""
        return json.loads(self.out)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """The --home folder."""
    return tmp_path / "home"


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    """All HTTP mocked."""
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.fixture
def cli(home: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run omictl with --home and capture stdout/stderr."""

    def invoke(*args: str) -> Result:
        code = run(["--home", str(home), *args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


def pin_file(home: Path) -> dict[str, Any]:
    """The pin file's registries."""
    registries: dict[str, Any] = json.loads((home / "known_registries.json").read_text())[
        "registries"
    ]
    return registries


# --------------------------------------------------------------------------- show


def test_show_not_pinned_text(cli: Any, mock: respx.MockRouter) -> None:
    """show prints name, key id, key and 'not pinned', exit 0."""
    mock.get(INFO_URL).respond(200, json=info())
    result = cli("registry", "show", URL + "/")
    assert result.code == 0
    assert result.out.splitlines() == [
        f"registry:    {URL}",
        "name:        Example Registry",
        f"key id:      {KID}",
        f"public key:  {KEY.hex()}",
        "pin:         not pinned (the first decommission will pin this key)",
    ]


def test_show_json_pinned(cli: Any, mock: respx.MockRouter, home: Path) -> None:
    """show -o json prints one document with the pin status."""
    mock.get(INFO_URL).respond(200, json=info())
    assert cli("registry", "pin", URL).code == 0
    result = cli("-o", "json", "registry", "show", URL)
    assert result.code == 0
    doc = result.json()
    pinned_at = pin_file(home)[URL]["pinned_at"]
    assert doc == {
        "url": URL,
        "name": "Example Registry",
        "public_key": KEY.hex(),
        "key_id": KID,
        "pin": {
            "status": "pinned",
            "public_key": KEY.hex(),
            "key_id": KID,
            "pinned_at": pinned_at,
            "name": "Example Registry",
        },
    }


def test_show_mismatch(cli: Any, mock: respx.MockRouter) -> None:
    """show reports MISMATCH, warns on stderr, and exits 0 (it only looks)."""
    assert cli("registry", "pin", URL, "--public-key", OTHER.hex()).code == 0
    mock.get(INFO_URL).respond(200, json=info())
    result = cli("registry", "show", URL)
    assert result.code == 0
    assert result.out.splitlines()[-1].startswith(f"pin:         MISMATCH: key {OTHER_KID} is")
    assert "NOT the pinned one" in result.err
    assert f"omictl registry pin {URL} --public-key HEX" in result.err


def test_show_uses_global_registry(cli: Any, mock: respx.MockRouter) -> None:
    """Without URL, show uses --registry."""
    mock.get(INFO_URL).respond(200, json=info())
    result = cli("--registry", URL, "registry", "show")
    assert result.code == 0
    assert result.out.splitlines()[0] == f"registry:    {URL}"


def test_show_without_url_is_usage_error(cli: Any) -> None:
    """No URL and no --registry: exit 2."""
    result = cli("registry", "show")
    assert result.code == 2
    assert "omictl: error: no registry URL given" in result.err


def test_show_plain_http_refused(cli: Any, mock: respx.MockRouter) -> None:
    """show http://non-loopback without --insecure: exit 2, nothing sent."""
    route = mock.route().respond(200, json=info())
    result = cli("registry", "show", "http://registry.example")
    assert result.code == 2
    assert "refusing plain http:// to registry.example" in result.err
    assert route.call_count == 0


def test_show_insecure_warns(cli: Any, mock: respx.MockRouter) -> None:
    """--insecure allows plain http and says so loudly on stderr."""
    mock.get("http://registry.example/v1/registry").respond(200, json=info())
    result = cli("registry", "show", "http://registry.example", "--insecure")
    assert result.code == 0
    assert "--insecure: the registry registry.example is plain HTTP" in result.err


def test_show_html_404_is_a_protocol_error(cli: Any, mock: respx.MockRouter) -> None:
    """A 404 HTML page from the "registry" breaks PROTOCOL.md section 5: exit 5 (a
    protocol error; exit 4 is for a problem+json 4xx) with a one-line error."""
    mock.get(INFO_URL).respond(404, text="<html>nope</html>", headers={"Content-Type": "text/html"})
    result = cli("registry", "show", URL)
    assert result.code == 5
    assert result.err.splitlines()[0] == (
        "omictl: error: registry info: registry.example answered HTTP 404 without a "
        "problem+json body"
    )


def test_show_json_error(cli: Any, mock: respx.MockRouter) -> None:
    """With -o json a failure is one JSON error object on stdout."""
    mock.get(INFO_URL).respond(
        200, content=b"not json", headers={"Content-Type": "application/json"}
    )
    result = cli("-o", "json", "registry", "show", URL)
    assert result.code == 5
    assert result.json()["error"]["code"] == "protocol_error"


def test_show_bad_timeout(cli: Any) -> None:
    """A zero (or not a number) --timeout is a usage error."""
    for value in ("0", "nan"):
        result = cli("registry", "show", URL, "--timeout", value)
        assert result.code == 2
        assert "timeout (from --timeout) must be more than 0 and at most 600 seconds" in result.err


def test_show_corrupt_pin_file(cli: Any, mock: respx.MockRouter, home: Path) -> None:
    """A corrupt pin file is exit 2 naming the file."""
    home.mkdir()
    (home / "known_registries.json").write_text("{")
    mock.get(INFO_URL).respond(200, json=info())
    result = cli("registry", "show", URL)
    assert result.code == 2
    assert f"pin file {home / 'known_registries.json'} is corrupt" in result.err


# --------------------------------------------------------------------------- pin


def test_pin_tofu(cli: Any, mock: respx.MockRouter, home: Path) -> None:
    """pin without a key pins what the registry presents and says it is TOFU."""
    mock.get(INFO_URL).respond(200, json=info())
    result = cli("registry", "pin", URL)
    assert result.code == 0
    assert result.out == f"pinned {URL} to key {KID}\n"
    assert "trust on first use" in result.err
    assert pin_file(home)[URL]["public_key"] == KEY.hex()


def test_pin_tofu_again_is_noop(cli: Any, mock: respx.MockRouter) -> None:
    """pin of the same presented key again says it is already pinned."""
    mock.get(INFO_URL).respond(200, json=info())
    cli("registry", "pin", URL)
    result = cli("registry", "pin", URL)
    assert (result.code, result.out) == (0, f"{URL} is already pinned to key {KID}\n")
    assert "trust on first use" not in result.err


def test_pin_tofu_refuses_changed_key(cli: Any, mock: respx.MockRouter, home: Path) -> None:
    """pin without a key never replaces another pinned key: exit 5 with the re-pin hint."""
    cli("registry", "pin", URL, "--public-key", OTHER.hex())
    mock.get(INFO_URL).respond(200, json=info())
    result = cli("registry", "pin", URL)
    assert result.code == 5
    assert f"registry {URL} is pinned to key {OTHER_KID}, not {KID}" in result.err
    assert "hint: if the registry really rotated its key" in result.err
    assert pin_file(home)[URL]["public_key"] == OTHER.hex()


def test_pin_explicit_offline(cli: Any, mock: respx.MockRouter, home: Path) -> None:
    """pin --public-key needs no network."""
    route = mock.route().respond(500)
    result = cli("registry", "pin", URL, "--public-key", KEY.hex())
    assert (result.code, result.out) == (0, f"pinned {URL} to key {KID}\n")
    assert route.call_count == 0
    assert pin_file(home)[URL]["key_id"] == KID


def test_pin_explicit_repin_shows_both_ids(cli: Any) -> None:
    """Re-pinning with --public-key replaces the old pin and prints old and new key ids."""
    cli("registry", "pin", URL, "--public-key", KEY.hex())
    result = cli("registry", "pin", URL, "--public-key", OTHER.hex())
    assert (result.code, result.out) == (0, f"re-pinned {URL}: key {KID} -> {OTHER_KID}\n")


def test_pin_explicit_json(cli: Any) -> None:
    """pin -o json prints the change as one document."""
    cli("registry", "pin", URL, "--public-key", KEY.hex())
    result = cli("-o", "json", "registry", "pin", URL, "--public-key", OTHER.hex())
    assert result.json() == {
        "url": URL,
        "name": "",
        "public_key": OTHER.hex(),
        "key_id": OTHER_KID,
        "previous_key_id": KID,
        "previous_key_ids": [KID],
        "changed": True,
        "source": "explicit",
    }


def test_pin_bad_key(cli: Any) -> None:
    """A malformed --public-key exits 2."""
    result = cli("registry", "pin", URL, "--public-key", "xyz")
    assert result.code == 2
    assert "--public-key must be 64 hex characters" in result.err


# --------------------------------------------------------------------------- forget


def test_forget_existing(cli: Any, home: Path) -> None:
    """forget removes the pin."""
    cli("registry", "pin", URL, "--public-key", KEY.hex())
    result = cli("registry", "forget", URL + "/")
    assert (result.code, result.out) == (0, f"forgot the pin for {URL}\n")
    assert pin_file(home) == {}


def test_forget_absent(cli: Any) -> None:
    """forget of an unknown registry says so and exits 0."""
    result = cli("-o", "json", "registry", "forget", URL)
    assert result.code == 0
    assert result.json() == {"url": URL, "forgotten": False}


def test_forget_bad_url(cli: Any) -> None:
    """forget of a malformed URL exits 2."""
    assert cli("registry", "forget", "ftp://x.example").code == 2


# --------------------------------------------------------------------------- imports


@pytest.mark.parametrize(
    "argv", [["--version"], ["registry", "forget", URL], ["registry", "--help"]]
)
def test_no_httpx_import(argv: list[str], tmp_path: Path) -> None:
    """--version and commands that need no network never import httpx."""
    code = (
        "import sys; from omictl.cli.app import run; "
        f"rc = run(['--home', {str(tmp_path)!r}, *{argv!r}]); "
        "assert 'httpx' not in sys.modules, 'httpx imported'; sys.exit(rc)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert (proc.returncode, proc.stderr) == (0, "")


def test_pin_first_use_reads_a_corrupt_pin_file_before_any_request(
    cli: Any, mock: respx.MockRouter, home: Path
) -> None:
    """Trust on first use checks the pin file first: exit 2 naming it, nothing fetched."""
    home.mkdir()
    (home / "known_registries.json").write_text("{")
    route = mock.get(INFO_URL).respond(200, json=info())
    result = cli("registry", "pin", URL)
    assert result.code == 2
    assert "is corrupt" in result.err
    assert route.call_count == 0
