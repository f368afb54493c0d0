"""A CI step's stdout or stderr closed or cut short: the run still does its work, its exit
status still says how it went, and nothing leaks into the wrong stream (real processes)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import E2E


def _bash(e2e: E2E, script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in bash with ``$OMICTL`` the CLI and the e2e environment."""
    env = dict(os.environ)
    env["OMICTL"] = f"{shlex.quote(sys.executable)} -m omictl"
    return subprocess.run(
        ["bash", "-c", script],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _all_revoked(e2e: E2E) -> bool:
    return {e2e.sandbox.binding_status(s) for s in e2e.sandbox.service_ids} == {"REVOKED"}


def test_closed_stdout_still_decommissions_and_exits_0(e2e: E2E, tmp_path: Path) -> None:
    """``>&-``: Python leaves sys.stdout None; the result goes nowhere, the exit is 0."""
    res = _bash(e2e, f"$OMICTL -o json decommission {e2e.app_id} --all --yes >&-", tmp_path)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr
    assert _all_revoked(e2e)


def test_closed_stderr_still_decommissions_with_one_json_document(e2e: E2E, tmp_path: Path) -> None:
    """``2>&-``: no progress lines, yet every step runs and stdout is the one document."""
    res = _bash(e2e, f"$OMICTL -o json decommission {e2e.app_id} --all --yes 2>&-", tmp_path)
    assert res.returncode == 0, res.stdout
    doc = json.loads(res.stdout)  # one document, nothing else mixed in
    assert [r["status"] for r in doc["results"]] == ["REVOKED"] * 3
    assert _all_revoked(e2e)


def test_closed_stderr_error_is_still_one_json_document(e2e: E2E, tmp_path: Path) -> None:
    res = _bash(e2e, "$OMICTL -o json decommission org.bad --all --yes 2>&-", tmp_path)
    assert res.returncode == 2
    assert json.loads(res.stdout)["error"]["exit_code"] == 2


def test_stdout_reader_gone_keeps_the_exit_status(e2e: E2E, tmp_path: Path) -> None:
    """``| true``: the reader exits before the document is written (a broken pipe)."""
    script = (
        f"$OMICTL -o json decommission {e2e.app_id} --all --yes | (exec 0<&-; true)\n"
        'echo "status=${PIPESTATUS[0]}" >&2'
    )
    res = _bash(e2e, script, tmp_path)
    assert "status=0" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and "BrokenPipeError" not in res.stderr
    assert _all_revoked(e2e)


def _with_dead_stderr(e2e: E2E, tmp_path: Path, args: str, *, late: bool = False) -> Any:
    """``omictl -o json decommission ARGS`` with stderr into a pipe whose reader has gone
    (``late``: gone before omictl starts) and stdout into a file: exit 0, the document."""
    command = f"$OMICTL -o json decommission {args}"
    if late:  # the reader is gone before omictl writes its first line
        command = f"(sleep 0.3; exec {command})"
    script = (  # stderr into the pipe, then stdout into the file
        f'{command} 2>&1 1>out.json | (exec 0<&-; true)\necho "status=${{PIPESTATUS[0]}}"'
    )
    res = _bash(e2e, script, tmp_path)
    assert "status=0" in res.stdout, res.stdout + res.stderr
    return json.loads((tmp_path / "out.json").read_text())


def test_stderr_reader_gone_does_not_stop_a_step(e2e: E2E, tmp_path: Path) -> None:
    """Progress lines into a pipe nobody reads: the decommission carries on to the end."""
    service = e2e.sandbox.service_ids[0]
    doc = _with_dead_stderr(e2e, tmp_path, f"{e2e.app_id} {service} --yes")
    assert doc["status"] == "REVOKED"
    assert e2e.sandbox.binding_status(service) == "REVOKED"


def test_stderr_reader_gone_before_a_batch_does_not_stop_it(e2e: E2E, tmp_path: Path) -> None:
    """The listing lines, warnings and step lines of a batch all go into a dead pipe: every
    service is still decommissioned and the document is written."""
    doc = _with_dead_stderr(e2e, tmp_path, f"{e2e.app_id} --all --yes", late=True)
    assert [r["status"] for r in doc["results"]] == ["REVOKED"] * 3
    assert _all_revoked(e2e)


def test_rich_warnings_into_a_dead_stderr_do_not_end_the_run(e2e: E2E, tmp_path: Path) -> None:
    """Rich's own answer to a broken pipe is exit 1: the --skip-provider warning (a Rich
    line) into a dead stderr once ended the run before anything was sent."""
    service = e2e.sandbox.service_ids[0]
    args = f"{e2e.app_id} {service} --skip-provider --yes"
    assert _with_dead_stderr(e2e, tmp_path, args, late=True)["status"] == "REVOKED"
    assert e2e.sandbox.binding_status(service) == "REVOKED"


@pytest.mark.parametrize("force_color", [True, False], ids=["FORCE_COLOR", "plain"])
def test_a_batch_at_a_terminal_writes_its_document_to_stdout(
    e2e: E2E, tmp_path: Path, force_color: bool
) -> None:
    """stderr on a terminal, stdout into a file: the JSON document goes to the file, never
    onto the terminal (Rich redirects stdout while a bar runs, and the report was once
    printed while it still did). A non-terminal stdout turns the progress bar off (CLI.md);
    FORCE_COLOR turns it back on, which is how the bar is exercised here."""
    import pty
    import select

    master, slave = pty.openpty()
    out_path = tmp_path / "out.json"
    with out_path.open("w") as out_file:
        child = subprocess.Popen(
            [
                *(sys.executable, "-m", "omictl", "-o", "json", "decommission", e2e.app_id),
                *("--all", "--yes"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out_file,
            stderr=slave,
            env={
                **{k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR")},
                "TERM": "xterm",
                **({"FORCE_COLOR": "1"} if force_color else {}),
            },
        )
        os.close(slave)
        seen = b""
        while True:  # drain the terminal, or the child blocks on it
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                seen += chunk
            elif child.poll() is not None:
                break
        child.wait(timeout=60)
    os.close(master)
    assert child.returncode == 0, seen
    doc = json.loads(out_path.read_text())
    assert [r["status"] for r in doc["results"]] == ["REVOKED"] * 3
    assert b'"results"' not in seen  # nothing of the document on the terminal
    assert (b"decommissioning" in seen) is force_color  # where the progress bar ran
