"""The command-line boundary: usage errors and where global options go."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from omictl.cli.app import _misplaced_global, run

pytestmark = pytest.mark.usefixtures("clean_omictl_env")


def test_a_global_option_after_the_subcommand_gets_a_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`omictl decommission APP --all --yes -o json`: exit 2, and a hint saying where -o
    goes (CLI.md: global options come before the sub-command); nothing is sent."""
    code = run(["--home", str(tmp_path), "decommission", "APP", "--all", "--yes", "-o", "json"])
    out = capsys.readouterr()
    assert code == 2
    assert "No such option: -o" in out.err
    assert "hint: -o is a global option: put it before the sub-command" in out.err
    assert out.out == ""  # -o json was not understood, so the output is not JSON either


def test_a_usage_error_with_json_asked_prints_one_error_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(["--home", str(tmp_path), "-o", "json", "status", "APP", "--bogus"])
    out = capsys.readouterr()
    assert code == 2
    assert json.loads(out.out)["error"]["exit_code"] == 2


@pytest.mark.parametrize(
    ("args", "found"),
    [
        (["decommission", "A", "--yes", "-o", "json"], "-o"),
        (["decommission", "A", "-ojson"], "-o"),
        (["status", "A", "--registry=http://127.0.0.1:1"], "--registry"),
        (["-o", "json", "keys", "list", "--debug"], "--debug"),
        (["-o", "json", "decommission", "A", "--yes"], None),
        (["--registry", "http://127.0.0.1:1", "status", "A"], None),
        (["keys", "sign", "k", "--", "-o"], None),
        (["status", "A", "--bogus"], None),
        (["decommission", "--from", "-oplan.json"], None),  # a value, not the option
        (["--profile", "status", "status", "A", "-o", "json"], "-o"),
        (["-o", "json", "decommission", "A", "--output=json"], "--output"),
    ],
)
def test_misplaced_global_options_are_found(args: list[str], found: str | None) -> None:
    assert _misplaced_global(args) == found


def test_an_unknown_option_gets_no_such_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["--home", str(tmp_path), "status", "APP", "--bogus"]) == 2
    assert "hint:" not in capsys.readouterr().err
