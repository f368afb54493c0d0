"""The output channels: JSON documents on stdout, inert server text."""

from __future__ import annotations

import io
import json
import re
import sys

import pytest

from omictl.cli.output import Output, write_json
from omictl.cli.render import StepPrinter
from omictl.errors import inert
from omictl.workflow.decommission import StepEvent

DOC = {"results": [{"service_id": "cms-1", "status": "REVOKED", "note": "é"}], "exit_code": 0}


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_for_a_terminal_is_indented() -> None:
    stream = Terminal()
    write_json(DOC, stream)
    text = stream.getvalue()
    assert text.startswith('{\n  "results": [\n')
    assert json.loads(text) == DOC
    assert "é" in text  # UTF-8 as is, not \\u escapes


def test_json_piped_is_one_line() -> None:
    stream = io.StringIO()
    write_json(DOC, stream)
    text = stream.getvalue()
    assert text.count("\n") == 1 and text.endswith("}\n")
    assert json.loads(text) == DOC
    assert "é" in text


def test_inert_keeps_printable_text_and_escapes_the_rest() -> None:
    assert inert("cms-article-77 REVOKED ✓") == "cms-article-77 REVOKED ✓"
    assert inert("ok\x1b[2Jgone\nforged") == "ok\\u001b[2Jgone\\u000aforged"
    assert inert("\u202eevil") == "\\u202eevil"
    # an astral format character (a language tag) as a surrogate pair, as JSON writes it:
    # "\\ue0001" would read as U+E000 then "1"
    assert inert("\U000e0001x") == "\\udb40\\udc01x"


def test_json_with_unprintable_text_is_written_escaped() -> None:
    """A peer's lone surrogate ("\\ud800", no UTF-8) and C1 control in a document: written
    as \\u escapes to a strict UTF-8 stream, terminal or pipe, never raw and never failing
    mid-write; the document parses back the same."""
    doc = {"binding": {"service_type": "cms \ud800 \x9b2J", "note": "é"}}
    for terminal in (False, True):
        raw = io.BytesIO()
        stream = io.TextIOWrapper(raw, encoding="utf-8", errors="strict")
        stream.isatty = lambda t=terminal: t  # type: ignore[method-assign]
        write_json(doc, stream)
        stream.flush()
        text = raw.getvalue().decode("utf-8")
        assert "\\ud800" in text and "\\u009b2J" in text and "é" in text
        assert text.count("\n") == (1 if not terminal else 6)
        assert json.loads(text) == doc


HOSTILE = "first contact [red]x[/red] :smile: \x1b[2J done"


@pytest.fixture
def plain_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)


@pytest.mark.usefixtures("plain_stderr")
def test_steps_off_a_terminal_are_plain_lines_written_without_rich(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A CI log gets the characters Rich would print there, peer text inert, markup and
    emoji codes shown as sent; Rich's console is never built (nor imported for it)."""
    out = Output(json_mode=False)
    printer = StepPrinter(out, prefix=True, quiet=True)
    printer(StepEvent("app", "svc[1]", "resolve", "warning", HOSTILE))
    printer(StepEvent("app", "svc[1]", "unbind", "done", "quiet: not shown"))
    printer(StepEvent("app", "svc[1]", "unbind", "start", "never shown in a log"))
    printer(StepEvent("app", "svc[1]", "check_revoked", "failed", "still listed"))
    assert capsys.readouterr().err == (
        "! svc[1] resolve: first contact [red]x[/red] :smile: \\u001b[2J done\n"
        "✗ svc[1] check_revoked: still listed\n"
    )
    assert not out.err_is_terminal()
    assert out._err is None


@pytest.mark.usefixtures("plain_stderr")
def test_rich_decides_when_told_the_stream_is_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # Rich's override (force-color.org's kin)
    out = Output(json_mode=False)
    assert out.err_is_terminal()
    StepPrinter(out)(StepEvent("app", "svc", "resolve", "warning", HOSTILE))
    err = capsys.readouterr().err
    assert "resolve: first contact [red]x[/red]" in err  # markup escaped, not applied
    assert "\x1b[2J" not in err  # the peer's escape stays inert


def test_times_in_text_output_are_utc_iso_8601_and_odd_values_stay_inert() -> None:
    from omictl.cli.render import when

    assert when(1795951877) == "2026-11-29T11:31:17Z"
    assert when(0) == "1970-01-01T00:00:00Z"
    assert when(True) == "True"  # a bool is not a time
    assert when(10**20) == str(10**20)  # beyond what a date can show: the number itself
    assert when("x\x1b[2J") == "x\\u001b[2J"  # a peer's string, made inert


def test_an_error_after_the_document_adds_no_second_document(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """-o json is exactly one document: a late error (a SIGTERM while exiting) is told on
    stderr only."""
    from omictl.cli.output import render_error
    from omictl.errors import Interrupted

    write_json({"results": []}, sys.stdout)
    render_error(Interrupted.by("SIGTERM"), json_mode=True)
    captured = capsys.readouterr()
    assert captured.out.count("\n") == 1 and json.loads(captured.out) == {"results": []}
    assert "interrupted (SIGTERM)" in captured.err


@pytest.mark.parametrize(
    ("env", "stdout_tty", "styled"),
    [
        ({}, True, True),
        ({}, False, False),
        ({"NO_COLOR": "1"}, True, False),
        ({"NO_COLOR": ""}, True, True),  # no-color.org: an empty value is not set
        ({"FORCE_COLOR": "1"}, False, True),
        ({"FORCE_COLOR": ""}, False, False),  # force-color.org: nor here
        ({"FORCE_COLOR": "1", "NO_COLOR": "1"}, True, False),  # NO_COLOR wins
    ],
)
def test_colour_follows_no_color_force_color_and_stdout(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], stdout_tty: bool, styled: bool
) -> None:
    import omictl.cli.output as output_module

    for name in ("NO_COLOR", "FORCE_COLOR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(output_module, "is_terminal", lambda stream: stdout_tty)
    assert output_module._styled() is styled


@pytest.mark.usefixtures("plain_stderr")
@pytest.mark.parametrize(
    ("no_color", "stdout_tty", "live"),
    [(False, True, True), (True, True, False), (False, False, False)],
    ids=["terminal", "NO_COLOR", "stdout-piped"],
)
def test_no_color_or_a_piped_stdout_turn_colour_and_live_progress_off(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    no_color: bool,
    stdout_tty: bool,
    live: bool,
) -> None:
    """CLI.md: "NO_COLOR and a non-TTY stdout turn colour and spinners off", whatever
    stderr is: no "… step" lines, no progress bar, and not even bold or dim (Rich's
    no_color keeps those) on a terminal stderr."""
    import omictl.cli.output as output_module

    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # stderr: a terminal, as Rich decides
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr(
        output_module, "is_terminal", lambda stream: stream is not sys.stdout or stdout_tty
    )
    out = Output(json_mode=False)
    assert out.err_is_terminal() and out.live() is live
    StepPrinter(out)(StepEvent("app", "svc", "resolve", "start", "reading the binding"))
    StepPrinter(out)(StepEvent("app", "svc", "resolve", "done", "ACTIVE"))
    out.warn("careful")
    err = capsys.readouterr().err
    assert ("… resolve" in err) is live
    assert ("\x1b[" in err) is live
    plain = re.sub("\x1b\\[[0-9;]*m", "", err)
    assert "resolve: ACTIVE" in plain and "warning: careful" in plain
