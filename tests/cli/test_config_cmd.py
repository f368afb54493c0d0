"""omictl config show|get|set|unset, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from omictl.cli.app import run

pytestmark = pytest.mark.usefixtures("clean_omictl_env")


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = run(list(args))
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return code, out.out, out.err


def test_set_then_get_in_a_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """config set writes the profile; config get reads it back with its source."""
    home = str(tmp_path)
    assert (
        cli(capsys, "--home", home, "--profile", "ci", "config", "set", "concurrency", "16")[0] == 0
    )
    code, out, _ = cli(
        capsys, "--home", home, "--profile", "ci", "-o", "json", "config", "get", "concurrency"
    )
    assert code == 0
    assert json.loads(out) == {"key": "concurrency", "value": 16, "source": "profile"}


def test_env_beats_profile_in_show(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """config show reports the environment as the source when it overrides the profile."""
    home = str(tmp_path)
    cli(capsys, "--home", home, "config", "set", "timeout", "3")
    monkeypatch.setenv("OMICTL_TIMEOUT", "7")
    code, out, _ = cli(capsys, "--home", home, "-o", "json", "config", "show")
    assert code == 0
    assert json.loads(out)["settings"]["timeout"] == {"value": 7.0, "source": "env"}


def test_unset_removes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """config unset removes a setting; get then shows the default."""
    home = str(tmp_path)
    cli(capsys, "--home", home, "config", "set", "key", "ci-key")
    assert cli(capsys, "--home", home, "config", "unset", "key")[0] == 0
    assert cli(capsys, "--home", home, "config", "get", "key")[1].strip() == "master"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["config", "set", "bogus", "1"], "unknown setting"),
        (["config", "set", "concurrency", "0"], "between 1 and 256"),
        (["config", "set", "output", "xml"], "'text' or 'json'"),
        (["config", "set", "registry", "ftp://x"], "registry"),
        (["config", "get", "nope"], "unknown setting"),
    ],
)
def test_bad_values_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], fragment: str
) -> None:
    """Bad keys and values: exit 2, one clear line, config file untouched."""
    code, _, err = cli(capsys, "--home", str(tmp_path), *args)
    assert code == 2
    assert fragment in err
    assert not (tmp_path / "config.toml").exists()


def test_receipts_show_unknown_is_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """receipts show for an id not in the archive: exit 2 with a hint."""
    code, _, err = cli(capsys, "--home", str(tmp_path), "receipts", "show", "RCPT-NOPE")
    assert code == 2
    assert "hint: list them with: omictl receipts list" in err


def test_receipts_verify_non_bundle_is_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """receipts verify on a JSON file that is not a bundle: exit 2."""
    path = tmp_path / "x.json"
    path.write_text('{"hello": 1}')
    code, _, err = cli(capsys, "--home", str(tmp_path), "receipts", "verify", str(path))
    assert code == 2
    assert "evidence bundle" in err


def test_json_mode_usage_error_from_the_parser_is_one_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """-o json with a usage error Click itself catches still prints one JSON document."""
    code, out, err = cli(
        capsys, "--home", str(tmp_path), "-o", "json", "keys", "sign", "k", "/dev/null"
    )
    assert code == 2
    assert json.loads(out)["error"]["exit_code"] == 2
    assert "--context" in err


def test_home_that_is_a_file_is_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--home naming a file: exit 2, one line."""
    path = tmp_path / "file"
    path.write_text("x")
    code, _, err = cli(capsys, "--home", str(path), "keys", "list")
    assert code == 2
    assert "is not a folder" in err


def test_app_slash_service_gets_a_splitting_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pasting APP/SERVICE as one argument: exit 2 and a hint with the two arguments."""
    code, _, err = cli(
        capsys, "--home", str(tmp_path), "decommission", "org.omiappreg.a.b.abcdef/svc-1", "--yes"
    )
    assert code == 2
    assert "omictl decommission org.omiappreg.a.b.abcdef svc-1" in err


def test_a_plain_http_registry_is_stored_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Stored as asked (the user may mean it), but said now: every later use needs
    --insecure. A loopback or https registry gets no warning."""
    home = ["--home", str(tmp_path)]
    code, _, err = cli(capsys, *home, "config", "set", "registry", "http://registry.example")
    assert code == 0 and "will need --insecure" in err
    for quiet in ("https://registry.example", "http://127.0.0.1:8080"):
        code, _, err = cli(capsys, *home, "config", "set", "registry", quiet)
        assert code == 0 and "warning" not in err


def test_a_bad_profile_value_can_be_repaired_with_config_set_and_unset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad value in config.toml stops the other commands (exit 2, with the repair in the
    hint), but not the config commands that repair it: show flags it, get of it names it,
    set replaces it, unset removes an unknown name; the rest of the file is kept."""
    home = str(tmp_path)
    config = tmp_path / "config.toml"
    config.write_text(
        '# mine\n[profiles.default]\ntimeout = "abc"\nbogus = 1\nkey = "ci"\n', encoding="utf-8"
    )
    code, _, err = cli(capsys, "--home", home, "keys", "list")
    assert code == 2 and "timeout (from" in err
    assert "hint: fix it with: omictl config set timeout VALUE" in err
    code, out, err = cli(capsys, "--home", home, "-o", "json", "config", "show")
    assert code == 0
    doc = json.loads(out)
    assert set(doc["invalid"]) == {"timeout", "bogus"}
    assert doc["settings"]["timeout"] == {"value": 10.0, "source": "default"}
    assert doc["settings"]["key"] == {"value": "ci", "source": "profile"}
    assert "other commands refuse to run until it is fixed" in err
    code, _, err = cli(capsys, "--home", home, "config", "get", "timeout")
    assert code == 2 and "must be a number of seconds" in err
    assert cli(capsys, "--home", home, "config", "set", "timeout", "5")[0] == 0
    code, _, err = cli(capsys, "--home", home, "keys", "list")
    assert code == 2 and "unknown setting 'bogus'" in err
    assert "hint: remove it: omictl config unset bogus" in err
    assert cli(capsys, "--home", home, "config", "unset", "bogus")[0] == 0
    assert cli(capsys, "--home", home, "keys", "list")[0] == 0
    assert config.read_text(encoding="utf-8") == (
        '# mine\n[profiles.default]\ntimeout = 5.0\nkey = "ci"\n'
    )


def test_a_bad_environment_value_is_shown_by_config_show(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """OMICTL_TIMEOUT=abc: other commands exit 2 naming the variable; config show says
    which value applies instead (the profile's)."""
    home = str(tmp_path)
    cli(capsys, "--home", home, "config", "set", "timeout", "3")
    monkeypatch.setenv("OMICTL_TIMEOUT", "abc")
    code, _, err = cli(capsys, "--home", home, "keys", "list")
    assert code == 2 and "OMICTL_TIMEOUT" in err and "hint: fix or unset OMICTL_TIMEOUT" in err
    code, out, _ = cli(capsys, "--home", home, "-o", "json", "config", "show")
    doc = json.loads(out)
    assert code == 0 and doc["settings"]["timeout"] == {"value": 3.0, "source": "profile"}
    assert doc["invalid"]["timeout"]["hint"] == "fix or unset OMICTL_TIMEOUT"


@pytest.mark.parametrize("how", ["flag", "env"])
def test_an_empty_home_is_refused_not_the_user_folders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """OMICTL_HOME= (an unset CI variable) or --home '' is exit 2, never the user's own
    keystore and state."""
    if how == "env":
        monkeypatch.setenv("OMICTL_HOME", "")
    code, _, err = cli(capsys, *(["--home", ""] if how == "flag" else []), "keys", "list")
    assert code == 2 and "is set but empty" in err
    if how == "env":  # the flag beats the environment: an explicit --home is used
        assert cli(capsys, "--home", str(tmp_path), "keys", "list")[0] == 0


@pytest.mark.parametrize(
    ("ref", "fragment"),
    [
        ("env:", "does not name a variable"),
        ("file:", "names no file"),
        ("bad/name", "is not valid"),
    ],
)
def test_config_set_key_checks_the_reference_form(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ref: str, fragment: str
) -> None:
    """A key reference that cannot be one is refused when stored (exit 2, nothing
    written), like the other settings, not at the first command that needs the key."""
    code, _, err = cli(capsys, "--home", str(tmp_path), "config", "set", "key", ref)
    assert code == 2 and "key (from config set)" in err and fragment in err
    assert not (tmp_path / "config.toml").exists()


def test_a_bad_key_reference_in_the_environment_is_said_where_the_key_is_needed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """OMICTL_KEY=bad/name: a command that needs the default key says so, naming the
    variable (exit 2); a command that needs no key, or is given one explicitly, runs."""
    home = str(tmp_path)
    monkeypatch.setenv("OMICTL_KEY", "bad/name")
    assert cli(capsys, "--home", home, "keys", "list")[0] == 0
    code, _, err = cli(capsys, "--home", home, "sandbox", "--port", "0")
    assert code == 2 and "key (from OMICTL_KEY)" in err and "fix or unset OMICTL_KEY" in err
    monkeypatch.setenv("OMICTL_KEY", "env:")
    code, _, err = cli(capsys, "--home", home, "sandbox", "--key", "nosuch", "--port", "0")
    assert code == 3 and "nosuch" in err  # the explicit key was used, and is missing


@pytest.mark.parametrize("command", [["show"], ["get", "registry"]])
def test_reading_a_profile_that_does_not_exist_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """--profile typo config show/get: exit 2 as every other command, not the defaults
    shown as if they were that profile's; config set still creates it."""
    home = str(tmp_path)
    code, _, err = cli(capsys, "--home", home, "--profile", "typo", "config", *command)
    assert code == 2 and "profile 'typo' is not in" in err
    assert cli(capsys, "--home", home, "--profile", "typo", "config", "set", "timeout", "3")[0] == 0
    assert cli(capsys, "--home", home, "--profile", "typo", "config", *command)[0] == 0


def test_a_bad_value_in_a_profile_this_run_does_not_use_stops_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """timeout = "abc" in [profiles.default] while OMICTL_PROFILE=ci: ci's commands run;
    the default profile's commands refuse, with a hint that repairs that profile."""
    home = str(tmp_path)
    (tmp_path / "config.toml").write_text(
        '[profiles.default]\ntimeout = "abc"\n[profiles.ci]\nconcurrency = 2\n', encoding="utf-8"
    )
    monkeypatch.setenv("OMICTL_PROFILE", "ci")
    assert cli(capsys, "--home", home, "keys", "list")[0] == 0
    code, _, err = cli(capsys, "--home", home, "--profile", "default", "keys", "list")
    assert code == 2 and "hint: fix it with: omictl config set timeout VALUE" in err
    monkeypatch.delenv("OMICTL_PROFILE")
    assert cli(capsys, "--home", home, "config", "set", "timeout", "5")[0] == 0
    assert cli(capsys, "--home", home, "keys", "list")[0] == 0


def test_a_nan_elsewhere_in_the_file_does_not_stop_an_edit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A TOML nan is not equal to itself: the edit's read-back compares bad values by
    what was written, so setting another key still works and keeps the nan as written."""
    home = str(tmp_path)
    config = tmp_path / "config.toml"
    config.write_text("[profiles.ci]\ntimeout = nan\n[profiles.default]\ntimeout = 5\n")
    assert cli(capsys, "--home", home, "config", "set", "concurrency", "4")[0] == 0
    assert "timeout = nan" in config.read_text() and "concurrency = 4" in config.read_text()


def test_a_profile_with_json_output_gets_its_error_document_even_when_a_setting_is_bad(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CI profile sets output = "json": a bad value elsewhere in it still ends in the
    one JSON error document on stdout, not text only."""
    (tmp_path / "config.toml").write_text(
        '[profiles.ci]\noutput = "json"\ntimeout = "abc"\n', encoding="utf-8"
    )
    code, out, _ = cli(capsys, "--home", str(tmp_path), "--profile", "ci", "keys", "list")
    assert code == 2
    assert json.loads(out)["error"]["code"] == "usage"


def test_a_bad_key_reference_in_a_profile_names_the_file_and_is_flagged_by_show(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """key = "bad/name" in [profiles.ci]: the command that uses it names the file and
    profile, and its hint repairs that profile; config show flags it."""
    home = str(tmp_path)
    (tmp_path / "config.toml").write_text('[profiles.ci]\nkey = "bad/name"\n', encoding="utf-8")
    code, _, err = cli(capsys, "--home", home, "--profile", "ci", "sandbox", "--port", "0")
    assert code == 2 and "config.toml [profiles.ci]" in err
    assert "hint: fix it with: omictl --profile ci config set key VALUE" in err
    assert "(or omictl --profile ci config unset key), or pass --key REF" in err
    code, out, err = cli(capsys, "--home", home, "--profile", "ci", "-o", "json", "config", "show")
    assert code == 0 and "key" in json.loads(out)["invalid"]
    assert "commands that use the default key refuse it" in err
    code, out, err = cli(capsys, "--home", home, "--profile", "ci", "config", "get", "key")
    assert code == 0 and out.strip() == "bad/name" and "refuse it" in err  # still shown


def test_config_show_flags_a_bad_profile_value_the_environment_hides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """timeout = "abc" in the profile, OMICTL_TIMEOUT=5: other commands still refuse the
    profile's value, so config show flags it though the variable's value applies."""
    home = str(tmp_path)
    (tmp_path / "config.toml").write_text('[profiles.default]\ntimeout = "abc"\n')
    monkeypatch.setenv("OMICTL_TIMEOUT", "5")
    assert cli(capsys, "--home", home, "keys", "list")[0] == 2
    code, out, _ = cli(capsys, "--home", home, "-o", "json", "config", "show")
    doc = json.loads(out)
    assert code == 0 and "timeout" in doc["invalid"]
    assert doc["settings"]["timeout"] == {"value": 5.0, "source": "env"}


@pytest.mark.parametrize("written", ["5", '""'])
def test_a_key_of_the_wrong_type_is_refused_by_config_get_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], written: str
) -> None:
    """key = 5 (not a reference at all): every command refuses it, so config get key is
    exit 2 too, not the default shown as if it applied, and no hint offers --key."""
    (tmp_path / "config.toml").write_text(f"[profiles.default]\nkey = {written}\n")
    code, out, err = cli(capsys, "--home", str(tmp_path), "config", "get", "key")
    assert code == 2 and out == "" and "--key" not in err
    code, _, err = cli(capsys, "--home", str(tmp_path), "keys", "list")
    assert code == 2 and "--key" not in err


def test_config_show_flags_both_when_the_profile_and_the_environment_are_bad(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Profile timeout = "x" and OMICTL_TIMEOUT=abc: other commands refuse the profile's
    first, so config show names it first, and the variable's too."""
    (tmp_path / "config.toml").write_text('[profiles.default]\ntimeout = "x"\n')
    monkeypatch.setenv("OMICTL_TIMEOUT", "abc")
    code, _, err = cli(capsys, "--home", str(tmp_path), "keys", "list")
    assert code == 2 and "config.toml [profiles.default]" in err
    code, out, _ = cli(capsys, "--home", str(tmp_path), "-o", "json", "config", "show")
    error = json.loads(out)["invalid"]["timeout"]["error"]
    assert error.index("config.toml") < error.index("OMICTL_TIMEOUT")
