"""The command-line layer (Typer). ``main`` is the console-script entry point."""

from __future__ import annotations

import os
import sys


def plug_closed_std_streams() -> None:
    """Give a closed stdin, stdout or stderr (``>&-``, ``2>&-``) ``/dev/null`` instead.

    Python leaves ``sys.stdout`` or ``sys.stderr`` as None then, which broke the first
    progress line (before anything was sent) or the result document (after the work was
    done) with exit 1. Worse, the next file omictl opened (a journal log) would take the
    free descriptor, and anything written to "stderr" at C level would land in it. Each
    closed descriptor is opened on ``/dev/null`` in order (``open`` takes the lowest free
    one): the run goes on, and its exit status still says what happened."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:  # pragma: no cover - a lower descriptor was free after all
                os.dup2(null, fd)
                os.close(null)
    if sys.stdin is None:
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - for the process's lifetime
    if sys.stdout is None:
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False, errors="backslashreplace")  # noqa: SIM115


def main() -> None:
    """Entry point. ``omictl --version`` is answered before Typer is even imported."""
    plug_closed_std_streams()
    if sys.argv[1:] == ["--version"] and os.environ.get("OMICTL_OUTPUT") != "json":
        from omictl import __version__

        print(f"omictl {__version__}")
        sys.exit(0)
    from omictl.cli.app import main as app_main

    app_main()
