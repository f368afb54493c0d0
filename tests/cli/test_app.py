"""The command-line boundary: usage errors and where global options go."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from omictl.cli.app import _misplaced_global, run

pytestmark = pytest.mark.usefixtures("clean_omictl_env")


@pytest.fixture(autouse=True)
def temp_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`omictl demo` makes its home with tempfile: under this test's folder, so a kept
    (--keep) or interrupted demo leaves nothing in the system's temp folder."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


def test_a_global_option_after_the_subcommand_gets_a_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`omictl decommission APP --all --yes -o json`: exit 2, and a hint saying where -o
    goes (CLI.md: global options come before the sub-command); nothing is sent."""
    code = run(["--home", str(tmp_path), "decommission", "APP", "--all", "--yes", "-o", "json"])
    out = capsys.readouterr()
    assert code == 2
    assert out.err.splitlines() == [
        "omictl: error: no such option: -o",
        "hint: -o is a global option: put it before the sub-command, "
        "e.g. omictl -o json decommission APP_ID --all --yes",
    ]
    assert out.out == ""  # -o json was not understood, so the output is not JSON either


def test_a_usage_error_with_json_asked_prints_one_error_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(["--home", str(tmp_path), "-o", "json", "status", "APP", "--bogus"])
    out = capsys.readouterr()
    assert code == 2
    error = json.loads(out.out)["error"]
    assert (error["exit_code"], error["code"]) == (2, "usage")
    assert error["message"] == "no such option: --bogus"  # the real reason, not "see stderr"


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


def test_an_unknown_option_is_an_omictl_error_pointing_at_the_help(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Click's usage errors look like every other omictl error (STYLE.md 1): one line and
    a hint, no usage block; not the global-option hint for an option that is not global."""
    assert run(["--home", str(tmp_path), "status", "APP", "--bogus"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "omictl: error: no such option: --bogus",
        "hint: see 'omictl status --help'",
    ]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["decomission"], "omictl: error: no such command 'decomission'. Did you mean"),
        (["status", "A", "--timeout", "soon"], "omictl: error: invalid value for '--timeout'"),
        (["keys", "show"], "omictl: error: missing argument 'NAME'."),
    ],
)
def test_click_usage_errors_are_one_line_and_a_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], error: str
) -> None:
    assert run(["--home", str(tmp_path), *args]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and lines[0].startswith(error), lines
    assert lines[1].startswith("hint: see 'omictl")


def test_a_group_without_its_command_shows_its_help_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["--home", str(tmp_path), "keys"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Usage: omictl keys") and "generate" in err


def test_a_group_without_its_command_still_answers_json_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["--home", str(tmp_path), "-o", "json", "keys"]) == 2
    out = capsys.readouterr()
    error = json.loads(out.out)["error"]
    assert (error["code"], error["exit_code"]) == ("usage", 2)
    assert error["message"] == "omictl keys needs a sub-command"
    assert out.err.startswith("Usage: omictl keys")


@pytest.mark.parametrize("keep", [False, True])
def test_an_interrupted_demo_does_not_point_at_a_journal_it_removed(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    keep: bool,
) -> None:
    """`omictl demo` cut short by SIGTERM: exit 130, and the hint says a re-run starts
    afresh (its home is gone, or kept with --keep), not that a journal resumes it."""
    import os
    import signal

    import omictl.workflow.decommission as workflow

    def stopped(*args: object, **kwargs: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # the handler omictl installed raises here
        raise AssertionError("SIGTERM did not stop the demo")

    monkeypatch.setattr(workflow, "decommission", stopped)
    code = run(["--home", str(tmp_path), "demo", *(["--keep"] if keep else [])])
    err = capsys.readouterr().err
    assert code == 130
    assert "omictl: error: interrupted (SIGTERM)" in err
    hint = next(line for line in err.splitlines() if line.startswith("hint: "))
    assert "starts afresh" in hint and "journal" not in hint
    assert ("is kept at" in hint) is keep


def test_an_interrupted_json_demo_has_the_demo_hint_in_its_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`omictl -o json demo` stopped inside the decommission: its result (ABORTED) is the
    document, and that document's hint is the demo's too, not the journal's."""
    import os
    import signal

    from omictl.workflow.decommission import _Run

    def stopped(self: object, registry_key: bytes) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        raise AssertionError("SIGINT did not stop the demo")

    monkeypatch.setattr(_Run, "unbind", stopped)
    code = run(["--home", str(tmp_path), "-o", "json", "demo"])
    out = capsys.readouterr()
    assert code == 130
    doc = json.loads(out.out)
    assert doc["status"] == "ABORTED"
    assert "starts afresh" in doc["error"]["hint"] and "journal" not in doc["error"]["hint"]


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["demo"], "`omictl demo` starts afresh"),
        (["status", "org.omiappreg.x.y.abcdef"], "re-run the same command"),
    ],
    ids=["demo-before-its-home", "status"],
)
def test_an_interrupt_outside_a_decommission_does_not_speak_of_a_journal(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    hint: str,
) -> None:
    """SIGTERM early in `omictl demo` (before its own handling) or during another command:
    exit 130, and the hint is that command's, not "resumes from its journal"."""
    import signal
    import tempfile

    from omictl.workflow import session

    def stopped(*args: object, **kwargs: object) -> None:
        signal.raise_signal(signal.SIGTERM)
        raise AssertionError("unreachable")

    monkeypatch.setattr(tempfile, "mkdtemp", stopped)  # the demo's first step
    monkeypatch.setattr(session, "open_session", stopped)  # status's first contact
    monkeypatch.setenv("OMICTL_REGISTRY", "http://127.0.0.1:9")
    code = run(["--home", str(tmp_path), *argv])
    err = capsys.readouterr().err
    assert code == 130 and "interrupted (SIGTERM)" in err
    shown = next(line for line in err.splitlines() if line.startswith("hint: "))
    assert hint in shown and "journal" not in shown


@pytest.mark.parametrize(
    ("stop_at", "bundled"), [("unbind", False), ("check_revoked", True)], ids=["before", "after"]
)
def test_the_demo_says_its_bundle_goes_with_its_home_only_when_one_was_written(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    stop_at: str,
    bundled: bool,
) -> None:
    """Interrupted before the archive step there is no bundle to speak of; after it (the
    re-read), the bundle printed by the archive step is removed with the home, and the
    last line says so."""
    import signal

    from omictl.workflow.decommission import _Run

    def stopped(*args: object, **kwargs: object) -> None:
        signal.raise_signal(signal.SIGINT)
        raise AssertionError("unreachable")

    monkeypatch.setattr(_Run, stop_at, stopped)
    assert run(["--home", str(tmp_path), "demo", "--services", "1"]) == 130
    err = capsys.readouterr().err
    assert ("archive: " in err) is bundled
    removed = next(line for line in err.splitlines() if "is removed now" in line)
    assert ("the evidence bundle above with it" in removed) is bundled


@pytest.mark.parametrize("keep", [False, True])
def test_a_json_demo_says_whether_the_bundle_path_still_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keep: bool
) -> None:
    """`omictl -o json demo`: its bundle path lies in the demo's home, removed at the end
    unless --keep; the document says which (demo_home), and the path is there iff kept."""
    code = run(["--home", str(tmp_path), "-o", "json", "demo", *(["--keep"] if keep else [])])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["status"] == "REVOKED"
    assert doc["demo_home"]["kept"] is keep
    assert Path(doc["bundle"]).is_relative_to(doc["demo_home"]["path"])
    assert Path(doc["bundle"]).exists() is keep


@pytest.mark.parametrize("how", ["flag", "env"])
def test_version_with_json_output_is_one_json_document(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    if how == "env":
        monkeypatch.setenv("OMICTL_OUTPUT", "json")
    args = ["-o", "json", "--version"] if how == "flag" else ["--version"]
    monkeypatch.setattr("sys.argv", ["omictl", *args])
    from omictl import __version__
    from omictl.cli import main

    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 0
    assert json.loads(capsys.readouterr().out) == {"version": __version__}


def test_a_path_the_system_refuses_is_a_usage_error_not_a_bug(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --home whose name is longer than the filesystem allows: exit 2 naming the path,
    not "internal error: OSError" (exit 1, "report it")."""
    code = run(["--home", str(tmp_path / ("x" * 300)), "config", "show"])
    err = capsys.readouterr().err
    assert code == 2
    assert "File name too long" in err and "internal error" not in err


@pytest.mark.parametrize(
    ("errno_", "code"), [(13, 2), (30, 2), (21, 2), (5, 1), (24, 1)]
)  # EACCES, EROFS, EISDIR: the environment (exit 2); EIO, EMFILE: not a usage problem
def test_an_escaped_os_error_is_usage_only_for_a_path_the_environment_refuses(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    errno_: int,
    code: int,
) -> None:
    import os

    from omictl.workflow.archive import Archive

    def refused(self: object, app_id: object = None) -> None:
        raise OSError(errno_, os.strerror(errno_), str(tmp_path / "receipts"))

    monkeypatch.setattr(Archive, "scan", refused)
    assert run(["--home", str(tmp_path), "receipts", "list"]) == code
    err = capsys.readouterr().err
    assert ("internal error" in err) is (code == 1)
